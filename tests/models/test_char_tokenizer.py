"""The character tokenizer: one id per character, exact round trip, HF save/load, left padding."""

from __future__ import annotations

from transformers import AutoTokenizer, PreTrainedTokenizerFast

from delta_rlvr.models import build_char_tokenizer, char_vocab

WORKED = "37+48=85. 85+19=104. answer 104"


def test_vocabulary_is_four_specials_then_newline_and_printable_ascii(char_tokenizer):
    vocab = char_vocab()
    assert len(char_tokenizer) == len(vocab) == 100
    assert (char_tokenizer.pad_token_id, char_tokenizer.bos_token_id,
            char_tokenizer.eos_token_id, char_tokenizer.unk_token_id) == (0, 1, 2, 3)
    # newline = 4, space (code 32) = 5, so character c has id code(c) - 27.
    assert vocab["\n"] == 4 and vocab[" "] == 5 and vocab["0"] == 21 and vocab["~"] == 99


def test_prompt_encodes_to_bos_then_one_id_per_character(char_tokenizer):
    # Hand-worked: '3'=51-27=24, '7'=28, '+'=43-27=16, '4'=25, '8'=29, '1'=22, '9'=30, '='=61-27=34.
    assert char_tokenizer("37+48+19=").input_ids == [1, 24, 28, 16, 25, 29, 16, 22, 30, 34]
    assert char_tokenizer("37", add_special_tokens=False).input_ids == [24, 28]


def test_worked_answers_round_trip_exactly_including_spaces_before_punctuation(char_tokenizer):
    for text in (WORKED, "q: 37+48+19 / a: 37+48=85 . 85 ,19\n(2*3)-4 = 2 ?", "  x  "):
        ids = char_tokenizer(text).input_ids
        assert len(ids) == len(text) + 1
        assert char_tokenizer.decode(ids, skip_special_tokens=True) == text


def test_eos_is_never_appended_and_decodes_as_a_special_token(char_tokenizer):
    ids = char_tokenizer("1+2=3").input_ids
    assert char_tokenizer.eos_token_id not in ids
    with_eos = ids + [char_tokenizer.eos_token_id]
    assert char_tokenizer.decode(with_eos) == "<bos>1+2=3<eos>"
    assert char_tokenizer.decode(with_eos, skip_special_tokens=True) == "1+2=3"


def test_characters_outside_the_vocabulary_map_to_unk(char_tokenizer):
    assert char_tokenizer("1é2", add_special_tokens=False).input_ids == [22, 3, 23]


def test_batches_are_left_padded_for_generation(char_tokenizer):
    batch = char_tokenizer(["1+2=", "37+48+19="], padding=True)
    assert batch.input_ids[0] == [0] * 5 + [1, 22, 16, 23, 34]
    assert batch.attention_mask[0] == [0] * 5 + [1] * 5
    assert batch.attention_mask[1] == [1] * 10


def test_save_and_reload_gives_the_same_tokenizer(tmp_path, char_tokenizer):
    char_tokenizer.save_pretrained(tmp_path)
    for loaded in (PreTrainedTokenizerFast.from_pretrained(tmp_path), AutoTokenizer.from_pretrained(tmp_path)):
        assert loaded.get_vocab() == char_tokenizer.get_vocab()
        assert loaded(WORKED).input_ids == char_tokenizer(WORKED).input_ids
        assert loaded.decode(loaded(WORKED).input_ids, skip_special_tokens=True) == WORKED
        assert (loaded.pad_token, loaded.bos_token, loaded.eos_token) == ("<pad>", "<bos>", "<eos>")
        assert loaded.padding_side == "left"


def test_model_max_length_is_validated():
    import pytest

    with pytest.raises(ValueError, match="model_max_length=1"):
        build_char_tokenizer(model_max_length=1)
