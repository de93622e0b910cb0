"""Sentence material of the synthetic corpus: neutral clauses and emotion cue phrases.

Clauses carry no emotion; a cue phrase (said by the speaker at the end of the emotional part)
correlates with the label, with noise, so text is weakly informative. Words are plain ASCII
letters so that eSpeak's word events map back to them.
"""

CLAUSES = (
    "the meeting starts after lunch", "I took the train into town",
    "we talked about the new kitchen", "she left the keys on the table",
    "the report is due next week", "my brother called me this morning",
    "they moved the office upstairs", "the weather changed in the afternoon",
    "I read the letter twice", "he parked the car outside the station",
    "we need more paper for the printer", "the shop closes at six",
    "you told me about the garden", "the bus was late again",
    "I finished the painting yesterday", "our neighbours bought a dog",
    "the phone rang during dinner", "she wrote down the address",
    "the package arrived on Friday", "we walked along the river",
    "he fixed the old bicycle", "the children went to the museum",
    "I changed the password last night", "they cancelled the concert",
    "the results came in this morning", "my sister is moving to the coast",
    "we painted the hallway blue", "the teacher gave us a test",
    "he sold his car last month", "the doctor called about the tests",
    "I found your jacket in the hall", "they opened a new cafe downtown",
    "she forgot the tickets at home", "the lights went out upstairs",
    "we watched the game on television", "the manager read the email",
    "I saw them at the station", "the cat slept on the sofa all day",
    "our flight leaves tomorrow evening", "he answered every question",
    "the water was cold this morning", "she started a new job in March",
    "they counted the boxes twice", "the neighbours had a party",
    "I lost my umbrella on the train", "we ordered food for everyone",
    "the garden needs more water", "he brought the wrong book",
    "the office will be closed on Monday", "my grandmother sent a letter",
    "the kids cleaned their rooms", "I heard the news on the radio",
    "they changed the plan again", "she painted the old fence",
    "the car needs new tires", "we met them at the market",
    "the exam results are out", "he moved into a small flat",
    "the dog ran across the field", "I wrote the whole thing again",
    "the train stopped outside the city", "you can pick it up on Sunday",
)

CUES = {
    "neutral": ("as planned", "by the way", "for the record", "as usual", "in any case",
                "more or less", "I suppose"),
    "happy": ("this is wonderful", "I love it", "what great news", "I am so glad",
              "that is fantastic", "we had so much fun", "I am really happy"),
    "sad": ("I miss them so much", "it is so sad", "I feel so lonely", "nothing ever works out",
            "I am sorry", "I wish it were different", "it hurts"),
    "angry": ("this is ridiculous", "I hate this", "stop it right now", "how dare you",
              "this is unacceptable", "I am sick of it", "get out"),
}
