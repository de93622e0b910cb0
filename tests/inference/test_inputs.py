"""Expanding what a user names into recordings: files, folders (recursive, extensions in any
case), CSV/JSONL manifests, Kaldi wav.scp; and every bad input's error."""

import json

import pytest
import torch

from fastser.audio.io import load_audio
from fastser.errors import AudioError, CorpusError, MissingPathError, UserError
from fastser.inference.inputs import AudioInput, list_inputs, read_input

from random_models import write_wavs


def test_folders_are_searched_recursively_for_audio_in_any_case(recordings):
    inputs = list_inputs([recordings])
    relative = [str(i.path.relative_to(recordings)) for i in inputs]
    assert relative == sorted(["a0.wav", "sub/a1.wav", "a2.wav", "sub/deeper/A3.WAV",
                               "a4.flac"])  # notes.txt is not audio
    assert all(i.id == str(i.path) for i in inputs)
    only_flac = list_inputs([recordings], extensions=["FLAC"])
    assert [i.path.name for i in only_flac] == ["a4.flac"]


def test_files_folders_and_lists_keep_the_order_given(recordings, tmp_path):
    scp = tmp_path / "wav.scp"
    scp.write_text(f"utt_b {recordings / 'a2.wav'}\n\nutt_a {recordings / 'a0.wav'}\n")
    first = recordings / "a4.flac"
    inputs = list_inputs([str(first), scp, recordings / "sub"])
    assert inputs[:3] == [AudioInput(str(first), first),
                          AudioInput("utt_b", recordings / "a2.wav"),
                          AudioInput("utt_a", recordings / "a0.wav")]
    assert [i.path for i in inputs[3:]] == [recordings / "sub/a1.wav",
                                            recordings / "sub/deeper/A3.WAV"]


def test_an_id_listed_twice_is_refused(recordings):
    with pytest.raises(UserError, match="listed twice"):
        list_inputs([recordings / "a0.wav", recordings / "a0.wav"])


def test_missing_paths_and_empty_folders_are_clear_errors(tmp_path):
    with pytest.raises(MissingPathError, match="input not found: .*nothing.wav"):
        list_inputs([tmp_path / "nothing.wav"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no audio files .* in this folder or its subfolders"):
        list_inputs([empty])
    (empty / "readme.txt").write_text("x")
    (empty / ".hidden.wav").write_bytes(b"")
    with pytest.raises(UserError, match="no audio files"):
        list_inputs([empty])


def test_wav_scp(tmp_path, recordings):
    scp = tmp_path / "wav.scp"
    scp.write_text(f"u1 {recordings / 'a0.wav'}\nu2   {recordings / 'a2.wav'}  \n")
    assert list_inputs([scp]) == [AudioInput("u1", recordings / "a0.wav"),
                                  AudioInput("u2", recordings / "a2.wav")]


@pytest.mark.parametrize("line, message", [
    ("u1 sox in.flac -t wav - |", r"wav.scp:2: u1: piped commands .* are not run"),
    ("u1 data/raw.ark:1234", r"wav.scp:2: u1: Kaldi archive offsets"),
    ("lonely_id", r"wav.scp:2: expected 'ID PATH'"),
])
def test_wav_scp_errors_name_the_line(tmp_path, line, message):
    scp = tmp_path / "wav.scp"
    scp.write_text(f"u0 a.wav\n{line}\n")
    with pytest.raises(CorpusError, match=message):
        list_inputs([scp])
    scp.write_text("\n\n")
    with pytest.raises(CorpusError, match="lists no recordings"):
        list_inputs([scp])


def test_csv_and_jsonl_manifests(tmp_path):
    write_wavs(tmp_path / "audio", [1.0, 2.0])
    csv_file = tmp_path / "list.csv"
    csv_file.write_text("id,path,label\nfirst,audio/a0.wav,happy\n,audio/a1.wav,sad\n")
    inputs = list_inputs([csv_file])
    assert inputs == [AudioInput("first", tmp_path / "audio/a0.wav"),
                      AudioInput("audio/a1", tmp_path / "audio/a1.wav")]  # id: path as written
    jsonl = tmp_path / "sub" / "list.jsonl"
    jsonl.parent.mkdir()
    rows = [{"Key": "k", "WAV": str(tmp_path / "audio/a0.wav"), "start_time": 0.25, "end": 0.75},
            {"file": "../audio/a1.wav"}]  # other tools' column names, in any case
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    part, whole = list_inputs([jsonl])
    assert part == AudioInput("k", tmp_path / "audio/a0.wav", 0.25, 0.75)
    assert whole == AudioInput("../audio/a1", tmp_path / "audio/a1.wav")
    audio = read_input(part)
    torch.testing.assert_close(audio, load_audio(part.path)[4000:12000])


@pytest.mark.parametrize("name, text, message", [
    ("m.csv", "id,label\nx,happy\n", r"m.csv:1: no path column \(named one of path, file"),
    ("m.csv", "path,label\n,happy\n", r"m.csv:2: no path \(a field named one of path"),
    ("m.csv", "path,start,end\na.wav,2,1\n", r"m.csv:2: end \(1.0\) must be after start"),
    ("m.csv", "path,start\na.wav,-1\n", r"m.csv:2: start must be a time >= 0 s"),
    ("m.csv", "path,start\na.wav,soon\n", r"m.csv:2: start must be a number, got 'soon'"),
    ("m.csv", "path\n", r"m.csv: the manifest lists no recordings"),
    ("m.jsonl", '{"path": "a.wav"}\n{"path": \n', r"m.jsonl:2: not valid JSON"),
    ("m.jsonl", '["a.wav"]\n', r"m.jsonl:1: expected a JSON object, got list"),
])
def test_manifest_errors_name_the_file_and_line(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(CorpusError, match=message):
        list_inputs([tmp_path / name])


def test_missing_recordings_of_a_manifest_fail_when_read_not_when_listed(tmp_path):
    write_wavs(tmp_path, [1.0])
    manifest = tmp_path / "m.csv"
    manifest.write_text("path\na0.wav\ngone.wav\n")
    present, missing = list_inputs([manifest])
    assert read_input(present).shape == (16000,)
    with pytest.raises(MissingPathError, match="not found: .*gone.wav"):
        read_input(missing)
    late = AudioInput("late", present.path, start=2.0)
    with pytest.raises(AudioError, match=r"a0.wav \[2-end s\]: the segment starts at 2.0 s, "
                                         "past the end of the 1.000 s file"):
        read_input(late)
