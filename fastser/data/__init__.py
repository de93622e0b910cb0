"""Datasets: the utterance record and corpus type, manifests (CSV / JSON lines), readers of
local copies of IEMOCAP, CREMA-D, RAVDESS and EmoDB, the synthetic default corpus, the user's
class set (label maps and selection), evaluation protocols and the collation of ragged
batches."""

from fastser.data._files import FOUR_CLASSES, CorpusError
from fastser.data.collate import (collate_padded, collate_segments, pack_sequences,
                                  pad_sequences)
from fastser.data.corpus import AFFECT, Corpus, CorpusSummary, Utterance
from fastser.data.crema_d import read_crema_d
from fastser.data.emodb import read_emodb
from fastser.data.iemocap import read_iemocap
from fastser.data.labels import LabelMap, apply_labels, parse_label_map, parse_labels
from fastser.data.manifest import read_manifest, write_manifest
from fastser.data.protocols import (Split, leave_one_session_out, leave_one_speaker_out,
                                    speaker_split)
from fastser.data.ravdess import read_ravdess
from fastser.data.sources import SOURCES, open_corpus
from fastser.data.synthetic import (SyntheticConfig, load_synthetic, read_synthetic,
                                    write_synthetic)

__all__ = [
    "AFFECT", "FOUR_CLASSES", "SOURCES", "Corpus", "CorpusError", "CorpusSummary", "LabelMap",
    "Split", "SyntheticConfig", "Utterance", "apply_labels", "collate_padded",
    "collate_segments", "leave_one_session_out", "leave_one_speaker_out", "load_synthetic",
    "open_corpus", "pack_sequences", "pad_sequences", "parse_label_map", "parse_labels",
    "read_crema_d", "read_emodb", "read_iemocap", "read_manifest", "read_ravdess",
    "read_synthetic", "speaker_split", "write_manifest", "write_synthetic",
]
