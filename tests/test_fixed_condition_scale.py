"""A fixed-condition method may carry its own guidance scale (``options={"scale": w}``), so a recorded
``--method diverse`` entry can add CFG in an interval at a request's scale 1 (issue #17)."""

import torch

from steerdiff.fixed_condition import cfg, diverse_setup, fixed_condition
from test_fixed_condition import inputs, tiny_cond


def test_scale_option_is_the_same_as_the_scale_argument():
    m = tiny_cond()
    x, s, y = inputs()
    by_option, terms = fixed_condition(m, "dpp", options={"strength": 2.0, "scale": 1.5, "interval": (0.5, 5.0)})
    by_argument, _ = fixed_condition(m, "dpp", scale=1.5, interval=(0.5, 5.0), options={"strength": 2.0})
    assert torch.equal(by_option(x, s, class_labels=y), by_argument(x, s, class_labels=y))
    assert torch.equal(by_option(x, s, class_labels=y), cfg(m, 1.5, interval=(0.5, 5.0))(x, s, class_labels=y))
    assert len(terms) == 1 and terms[0].strength == 2.0  # 'scale' went to the guidance, not to the term


def test_a_recorded_scale_applies_at_the_requests_scale_one_and_a_users_interval_still_wins():
    preset = {
        "sampler": "heun",
        "steps": 6,
        "diverse": {
            "class": {"method": "spell"},
            "class-unguided": {"method": "dpp", "strength": 3.0, "scale": 2.0, "interval": [0.5, 5.0]},
        },
    }
    m = tiny_cond(preset)
    x, _, y = inputs()
    den, terms, method = diverse_setup(m, labelled=True, scale=1.0)
    assert method == "dpp" and terms[0].strength == 3.0
    inside, outside = torch.full((4,), 2.0), torch.full((4,), 10.0)
    assert torch.equal(den(x, inside, class_labels=y), cfg(m, 2.0)(x, inside, class_labels=y))
    assert torch.equal(den(x, outside, class_labels=y), m(x, outside, class_labels=y))
    den, _, _ = diverse_setup(m, labelled=True, scale=1.0, interval=(5.0, 20.0))  # the user's interval
    assert torch.equal(den(x, inside, class_labels=y), m(x, inside, class_labels=y))
    assert torch.equal(den(x, outside, class_labels=y), cfg(m, 2.0)(x, outside, class_labels=y))
    den, _, _ = diverse_setup(m, labelled=False)  # no label: the recorded scale never applies
    assert den is m
