"""Service-account credentials from a throw-away RSA key, made at test time: they sign V4 URLs
locally (no network), and the GCS emulator serves such URLs without checking the signature."""

from __future__ import annotations

import functools

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.oauth2 import service_account

SIGNER_EMAIL = "render-signer@test-project.iam.gserviceaccount.com"


@functools.cache
def throwaway_credentials() -> service_account.Credentials:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return service_account.Credentials.from_service_account_info(
        {
            "type": "service_account",
            "client_email": SIGNER_EMAIL,
            "private_key": pem,
            "token_uri": "https://oauth2.googleapis.com/token",  # never called: signing is local
            "project_id": "test-project",
        }
    )
