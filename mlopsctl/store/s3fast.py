"""A small signed GET for S3 records, so read commands (`models show`, `runs show`) answer
without loading botocore: importing it and building a client costs ~0.2 s, more than the whole
budget of a quick read. Only the happy path lives here: a 200 (the object) or a 404 NoSuchKey.
Anything else (no credentials in the environment, a profile, errors, redirects, a refused
connection) returns None and the caller asks botocore, which retries and explains failures.

Signing follows AWS Signature Version 4 for a bodiless GET: the canonical request, the string to
sign and the HMAC-SHA256 key chain, with the payload hash of the empty body."""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import http.client
import os
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # host[:port] as sent in the Host header
    path_prefix: str  # "/bucket" for path-style addressing, "" for virtual-hosted
    region: str


def target_for(
    bucket: str, endpoint_url: str | None, region: str | None, addressing_style: str | None
) -> Target | None:
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        return None
    if endpoint_url:
        parts = urlsplit(endpoint_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
            return None
        if addressing_style == "virtual":
            return Target(parts.scheme, f"{bucket}.{parts.netloc}", "", region)
        return Target(parts.scheme, parts.netloc, f"/{bucket}", region)
    if "." in bucket or addressing_style == "path":
        return None  # leave AWS's dotted-bucket and path-style rules to botocore
    return Target("https", f"{bucket}.s3.{region}.amazonaws.com", "", region)


def _credentials() -> tuple[str, str, str | None] | None:
    if os.environ.get("AWS_PROFILE"):
        return None  # a named profile may mean SSO or roles: botocore's job
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not key or not secret:
        return None
    return key, secret, os.environ.get("AWS_SESSION_TOKEN") or None


def _sign(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signed_headers(
    target: Target, path: str, creds: tuple[str, str, str | None], now: _dt.datetime
) -> dict[str, str]:
    access, secret, token = creds
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    headers = {"host": target.host, "x-amz-content-sha256": _EMPTY_SHA256, "x-amz-date": amz_date}
    if token:
        headers["x-amz-security-token"] = token
    names = sorted(headers)
    canonical = "\n".join(
        [
            "GET",
            path,
            "",  # no query string
            "".join(f"{n}:{headers[n].strip()}\n" for n in names),
            ";".join(names),
            _EMPTY_SHA256,
        ]
    )
    scope = f"{day}/{target.region}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    signing_key = _sign(
        _sign(_sign(_sign(f"AWS4{secret}".encode(), day), target.region), "s3"), "aws4_request"
    )
    signature = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access}/{scope}, SignedHeaders={';'.join(names)}, "
        f"Signature={signature}"
    )
    return headers


class Missing(Exception):
    """The server said NoSuchKey."""


def fetch(target: Target, key: str, timeout: float) -> tuple[bytes, str] | None:
    """(body, etag) for a 200; raises Missing for NoSuchKey; None for anything else."""
    creds = _credentials()
    if creds is None:
        return None
    path = target.path_prefix + "/" + quote(key, safe="/~")
    headers = signed_headers(target, path, creds, _dt.datetime.now(_dt.timezone.utc))
    host = target.host
    conn_cls = (
        http.client.HTTPSConnection if target.scheme == "https" else http.client.HTTPConnection
    )
    conn = conn_cls(host, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read()
        if response.status == 200:
            return body, (response.getheader("ETag") or "").strip('"')
        if response.status == 404 and b"<Code>NoSuchKey</Code>" in body:
            raise Missing(key)
        return None
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()
