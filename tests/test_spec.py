import pytest
from hypothesis import given
from hypothesis import strategies as st

from semzip import SpecError, format_spec, make_codec, parse_spec
from semzip.spec import Spec

names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
keys = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True)
values = st.one_of(
    st.integers(-10**12, 10**12),
    st.floats(allow_nan=False, allow_infinity=False),
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,8}", fullmatch=True),  # words hold no '+': it joins stages
)


@given(names, st.dictionaries(keys, values, max_size=5))
def test_format_then_parse_is_identity(name, params):
    spec = Spec(name, tuple(params.items()))
    assert parse_spec(format_spec(spec)) == spec


def test_parse_types():
    spec = parse_spec("pq:M=32,K=256,opq=1")
    assert spec.as_dict() == {"M": 32, "K": 256, "opq": 1}
    assert parse_spec("smic:cos=0.9").as_dict() == {"cos": 0.9}
    assert parse_spec("x:mode=fast").as_dict() == {"mode": "fast"}
    assert parse_spec("f16") == Spec("f16")


@pytest.mark.parametrize(
    "text, token",
    [
        ("pq:M32", "M32"),
        ("pq:M=32,,K=8", "''"),
        ("pq:M=3$", "3$"),
        ("PQ:M=3", "PQ"),
        ("pq:", "no parameters"),
        ("pq:M=1,M=2", "'M' given twice"),
        ("nope", "unknown codec 'nope'"),
        ("pq:Z=3", "unknown parameter 'Z'"),
        ("pq:M=abc", "pq:M must be an integer"),
        ("pq:K=100", "power of two"),
        ("pq:opq=2", "pq:opq must be 0 or 1"),
    ],
)
def test_bad_specs_name_the_bad_token(text, token):
    with pytest.raises(SpecError) as info:
        make_codec(text)
    assert token in str(info.value)


def test_codec_spec_is_canonical():
    codec = make_codec("pq:K=16,M=8")
    assert str(codec.spec) == "pq:M=8,K=16,opq=1"
    assert make_codec(str(codec.spec)).spec == codec.spec
