"""Reading the plugin's answers in route tests: JSON bodies, and binary ones (``http_api.md``:
a uint32 length, a JSON header, then the payload)."""

import json
import struct


def ok_json(response):
    """The JSON body of a 200 answer, checked as the plugin sends JSON."""
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    return json.loads(response.get_data())


def ok_binary(response):
    """``(header, payload bytes, header length)`` of a 200 binary answer."""
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == "application/octet-stream"
    body = response.get_data()
    (length,) = struct.unpack("<I", body[:4])
    return json.loads(body[4:4 + length].decode("ascii")), body[4 + length:], length
