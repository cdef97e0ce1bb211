"""The restricted unpickler: plain data loads, anything naming a global is refused unexecuted."""

import os
import pickle

import pytest

from regiongpt.data.safe_pickle import UnsafePickleError, decode_py2_strings, safe_load, safe_loads


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_plain_data_round_trips(tmp_path):
    data = [{"ref_id": 0, "sentences": [{"sent": "man left"}], "score": 0.5, "ok": True, "none": None}]
    data.append({"tuple": (1, 2), "big": 2**70, "text": "café"})
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        path = tmp_path / f"p{protocol}.p"
        path.write_bytes(pickle.dumps(data, protocol=protocol))
        assert safe_load(path) == data
    # bytes and sets have opcodes of their own from protocol 4 on (older ones name a global)
    extra = {"bytes": b"\x00\x01", "set": {1, 2}, "frozen": frozenset({3})}
    assert safe_loads(pickle.dumps(extra, protocol=4)) == extra


def test_reduce_exploit_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps([{"ref_id": 1}, _Exploit(str(marker))], protocol=2)
    with pytest.raises(UnsafePickleError, match=r"refusing to load the global '(posix|os|nt)\.system'"):
        safe_loads(payload)
    assert not marker.exists()
    # the error is also a ValueError, so converters and the CLI report it as bad input
    with pytest.raises(ValueError, match="refusing"):
        safe_loads(payload)


def test_protocol0_global_and_instance_opcodes_are_refused(tmp_path):
    marker = tmp_path / "pwned0"
    reduce_call = f"cos\nsystem\n(Vtouch {marker}\ntR.".encode()
    inst_call = f"(Vtouch {marker}\nios\nsystem\n.".encode()
    for payload in (reduce_call, inst_call):
        with pytest.raises(UnsafePickleError, match="os.system"):
            safe_loads(payload)
    assert not marker.exists()


class _Plain:
    pass


def test_class_instances_are_refused():
    class_payload = pickle.dumps(_Plain(), protocol=4)
    with pytest.raises(UnsafePickleError, match="refusing"):
        safe_loads(class_payload)


def test_truncated_pickle_gives_clear_error(tmp_path):
    path = tmp_path / "broken.p"
    path.write_bytes(pickle.dumps([1, 2, 3])[:-3])
    with pytest.raises(UnsafePickleError, match=r"broken\.p: not a valid pickle"):
        safe_load(path)


def test_python2_strings_decode():
    # protocol 0 as Python 2 writes it: S'...' is a byte string (here UTF-8 'café')
    py2 = b"(lp0\n(dp1\nS'sent'\np2\nS'caf\\xc3\\xa9 left'\np3\nsS'ref_id'\np4\nI7\nsa."
    loaded = decode_py2_strings(safe_loads(py2, encoding="bytes"))
    assert loaded == [{"sent": "café left", "ref_id": 7}]
    assert decode_py2_strings([b"\xe9t\xe9"]) == ["été"]  # not UTF-8: Latin-1
