"""Every request is checked through a declaration (lstmgen.core.settings): the service's inputs and a training
request are refused with the same style of message as the sampling settings."""

import pytest

from lstmgen.serve.service import Inputs, RequestError
from lstmgen.core.settings import SettingError, checked
from lstmgen.core.operator_settings import TrainingLimits
from lstmgen.serve.studio import TrainingError, TrainRequest, check_request


def test_a_text_setting_is_bounded_by_its_length_in_the_declared_unit():
    assert checked(Inputs, prompt="x" * 2000).prompt == "x" * 2000
    with pytest.raises(SettingError, match="^prompt is 2,001 characters; the limit is 2,000$"):
        checked(Inputs, prompt="x" * 2001)
    with pytest.raises(SettingError, match="^prompt must be text$"):
        checked(Inputs, prompt=["a list"])
    # A training text counts UTF-8 bytes: 400 three-byte characters are 1,200 bytes, over a 1,000 least.
    assert check_request(TrainingLimits(), text="€" * 400).text == "€" * 400
    with pytest.raises(SettingError, match="^the text is 999 bytes; a model needs at least 1,000 to learn from$"):
        check_request(TrainingLimits(), text="€" * 333)


def test_limits_known_only_at_run_time_are_given_as_bounds():
    assert checked(Inputs, bounds={"layer": (1, 3)}, layer=3).layer == 3
    with pytest.raises(SettingError, match="^layer must be between 1 and 2, got 3$"):
        checked(Inputs, bounds={"layer": (1, 2)}, layer=3)
    # The server's configured training limits, not the declared defaults, bound the request.
    limits = TrainingLimits(min_bytes=10, max_bytes=20, min_seconds=1, max_seconds=5)
    assert check_request(limits, text="x" * 15, seconds=5).seconds == 5.0
    with pytest.raises(SettingError, match="^seconds must be between 1 and 5, got 6$"):
        check_request(limits, seconds=6)
    with pytest.raises(SettingError, match="^the text is 21 bytes; the limit is 20$"):
        check_request(limits, text="x" * 21)


def test_a_training_request_declares_its_choices():
    assert checked(TrainRequest, tokenizer="word", size="small").size == "small"
    with pytest.raises(SettingError, match="^size must be one of tiny, small, not 'huge'$"):
        check_request(TrainingLimits(), size="huge")
    with pytest.raises(SettingError, match="looks binary"):
        check_request(TrainingLimits(), text="a\x00b" * 500)


def test_every_refusal_is_a_setting_error_the_app_shows_as_it_is():
    assert issubclass(RequestError, SettingError) and issubclass(TrainingError, SettingError)
