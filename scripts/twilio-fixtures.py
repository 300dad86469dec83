#!/usr/bin/env python3
"""Writes tests/fixtures/twilio_signatures.json: Twilio webhook signatures and their verdicts,
computed with twilio-python's own RequestValidator, for src/webhooks/twilio.rs to be held to.

    python3 -m venv /tmp/tw && /tmp/tw/bin/pip install twilio
    /tmp/tw/bin/python scripts/twilio-fixtures.py > tests/fixtures/twilio_signatures.json

Each case: the auth token, the URL Twilio signed (`signed_url`), the URL the server
reconstructs (`url`), the form parameters in wire order or a raw body, the signature header,
the signature-settings header, and `valid`: what RequestValidator.validate answers.
"""
import hashlib
import json
import sys

import twilio
from twilio.request_validator import RequestValidator, get_signature_algorithm


class MultiDict(dict):
    """Form parameters with repeats, as Flask's MultiDict (RequestValidator calls getall)."""

    def __init__(self, pairs):
        super().__init__()
        self.pairs = pairs
        for k, v in pairs:
            self.setdefault(k, v)

    def getall(self, name):
        return [v for k, v in self.pairs if k == name]


TOKEN = "12345"
EXAMPLE = [("CallSid", "CA1234567890ABCDE"), ("Caller", "+14158675309"), ("Digits", "1234"),
           ("From", "+14158675309"), ("To", "+18005551212")]
BASE = "https://mycompany.com/myapp.php?foo=1&bar=2"
STREAM = "wss://mycompany.com/ws/twilio/media"


def case(name, signed_url, url, params=None, body=None, token=TOKEN, settings=None,
         sign_params=None, sign_token=None):
    v = RequestValidator(sign_token or token)
    algorithm = get_signature_algorithm(settings)
    if body is not None:
        sig = v.compute_signature(signed_url, {}, algorithm)
        verdict = RequestValidator(token).validate(url, body, sig, algorithm)
    else:
        sig = v.compute_signature(signed_url, MultiDict(sign_params or params), algorithm)
        verdict = RequestValidator(token).validate(url, MultiDict(params), sig, algorithm)
    return {"name": name, "token": token, "signed_url": signed_url, "url": url,
            "params": params, "body": body, "signature": sig, "settings": settings,
            "valid": bool(verdict)}


def body_url(path, body):
    return path + "?bodySHA256=" + hashlib.sha256(body.encode()).hexdigest()


json_body = '{"CallSid":"CA1","CallStatus":"completed"}'
cases = [
    case("published example", BASE, BASE, EXAMPLE),
    case("signed with :443, configured without", "https://mycompany.com:443/myapp.php?foo=1&bar=2", BASE, EXAMPLE),
    case("signed without port, configured with :443", BASE, "https://mycompany.com:443/myapp.php?foo=1&bar=2", EXAMPLE),
    case("http with :80", "http://mycompany.com:80/hook", "http://mycompany.com/hook", EXAMPLE),
    case("non-default port kept", "https://mycompany.com:8443/hook", "https://mycompany.com:8443/hook", EXAMPLE),
    case("repeated parameter, same value", BASE, BASE, EXAMPLE + [("Digits", "1234")]),
    case("repeated parameter, two values", BASE, BASE, EXAMPLE + [("Digits", "0000")]),
    case("repeated parameter, values out of order", BASE, BASE, [("A", "2"), ("B", "x"), ("A", "1")]),
    case("unicode values", BASE, BASE, [("Body", "שלום 👋"), ("From", "+972500000000")]),
    case("empty value", BASE, BASE, [("Digits", ""), ("CallSid", "CA1")]),
    case("HMAC-SHA256 from the settings header", BASE, BASE, EXAMPLE,
         settings="key=webhooks_sharedkey_1,algorithm=HMAC_SHA256"),
    case("JSON body with bodySHA256", body_url("https://mycompany.com/hook", json_body),
         body_url("https://mycompany.com/hook", json_body), body=json_body),
    case("JSON body, port variant", body_url("https://mycompany.com:443/hook", json_body),
         body_url("https://mycompany.com/hook", json_body), body=json_body),
    # Tampered: each must be refused.
    case("tampered value", BASE, BASE, [("Digits", "1235")] + EXAMPLE[:2], sign_params=[("Digits", "1234")] + EXAMPLE[:2]),
    case("other token", BASE, BASE, EXAMPLE, sign_token="54321"),
    case("other scheme", BASE, "http://mycompany.com/myapp.php?foo=1&bar=2", EXAMPLE),
    case("other query", BASE, "https://mycompany.com/myapp.php?foo=1&bar=3", EXAMPLE),
    case("other non-default port", "https://mycompany.com:8443/hook", "https://mycompany.com:9443/hook", EXAMPLE),
    case("extra parameter", BASE, BASE, EXAMPLE + [("Extra", "1")], sign_params=EXAMPLE),
    # A Media Stream's WebSocket upgrade: the stream URL alone, no parameters.
    case("media stream upgrade", STREAM, STREAM, []),
    case("media stream upgrade, HMAC-SHA256", STREAM, STREAM, [],
         settings="key=webhooks_sharedkey_1,algorithm=HMAC_SHA256"),
    case("media stream upgrade, signed with :443, configured without", "wss://mycompany.com:443/ws/twilio/media",
         STREAM, []),
    case("media stream upgrade, other path", STREAM, "wss://mycompany.com/ws/twilio/other", []),
    case("media stream upgrade, ws instead of wss", STREAM, "ws://mycompany.com/ws/twilio/media", []),
    case("media stream upgrade, signed with parameters", STREAM, STREAM, [], sign_params=[("CallSid", "CA1")]),
    case("SHA-1 signature under an HMAC_SHA256 header", BASE, BASE, EXAMPLE,
         settings="algorithm=HMAC_SHA256"),
]
# The last case signs with SHA-256 and checks with it; make one that signs SHA-1 but claims SHA-256.
sha1_sig = RequestValidator(TOKEN).compute_signature(BASE, MultiDict(EXAMPLE))
cases[-1]["signature"] = sha1_sig
cases[-1]["valid"] = bool(RequestValidator(TOKEN).validate(BASE, MultiDict(EXAMPLE), sha1_sig, "HMAC_SHA256"))
tampered_body = '{"CallSid":"CA1","CallStatus":"failed"}'
c = case("JSON body tampered", body_url("https://mycompany.com/hook", json_body),
         body_url("https://mycompany.com/hook", json_body), body=json_body)
c["body"] = tampered_body
c["valid"] = bool(RequestValidator(TOKEN).validate(c["url"], tampered_body, c["signature"]))
cases.append(c)
c = case("JSON body, hash tampered in the URL", body_url("https://mycompany.com/hook", json_body),
         body_url("https://mycompany.com/hook", json_body), body=json_body)
c["url"] = body_url("https://mycompany.com/hook", tampered_body)
c["valid"] = bool(RequestValidator(TOKEN).validate(c["url"], json_body, c["signature"]))
cases.append(c)

json.dump({"twilio_python": twilio.__version__, "cases": cases}, sys.stdout, indent=1, ensure_ascii=False)
sys.stdout.write("\n")
