"""PyKMIP (PyPI) against a KMIP port (kms-server or the image): binary TTLV over mutual TLS.

Run by testkit::pykmip (kms/server/tests/pykmip.rs, image/tests/kms_image.rs):
    python client.py HOST PORT CA_PEM CLIENT_CERT_PEM CLIENT_KEY_PEM
Creates an AES-256 key, activates it, gets it, encrypts and decrypts with AES-GCM, revokes
and destroys it; prints one line per step and exits non-zero on the first failure.

PyKMIP's Encrypt returns the data and the IV but not the authentication tag, and its Decrypt
takes no tag: the script checks the ciphertext against AES-GCM computed locally with the key it
got, then decrypts `IV || ciphertext || tag` sent as the Data alone (which the server accepts).
"""

import sys

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from kmip import enums
from kmip.pie import client as pie_client


def main(host, port, ca, cert, key):
    c = pie_client.ProxyKmipClient(
        hostname=host,
        port=int(port),
        cert=cert,
        key=key,
        ca=ca,
        config_file="/dev/null",
        kmip_version=enums.KMIPVersion.KMIP_2_0,
    )
    with c:
        uid = c.create(
            enums.CryptographicAlgorithm.AES,
            256,
            cryptographic_usage_mask=[
                enums.CryptographicUsageMask.ENCRYPT,
                enums.CryptographicUsageMask.DECRYPT,
            ],
        )
        print("create", uid)
        c.activate(uid)
        print("activate", uid)
        key_obj = c.get(uid)
        assert len(key_obj.value) == 32, key_obj
        print("get", type(key_obj).__name__, len(key_obj.value))
        params = {
            "block_cipher_mode": enums.BlockCipherMode.GCM,
            "tag_length": 16,
        }
        plaintext = b"sixty-four bytes of plaintext through PyKMIP over binary TTLV!!"
        ciphertext, iv = c.encrypt(plaintext, uid=uid, cryptographic_parameters=params)
        print("encrypt", len(ciphertext), len(iv or b""))
        local = AESGCM(key_obj.value).encrypt(iv, plaintext, None)
        assert local[:-16] == ciphertext, "the server's ciphertext is not AES-GCM under the key"
        decrypted = c.decrypt(iv + local, uid=uid, cryptographic_parameters=params)
        assert decrypted == plaintext, decrypted
        print("decrypt", len(decrypted))
        c.revoke(enums.RevocationReasonCode.CESSATION_OF_OPERATION, uid)
        print("revoke", uid)
        c.destroy(uid)
        print("destroy", uid)
        try:
            c.get(uid)
        except Exception as e:  # noqa: BLE001 - PyKMIP raises KmipOperationFailure
            print("get after destroy refused:", type(e).__name__)
        else:
            raise AssertionError("a destroyed key was returned")
        print("done", uid)


if __name__ == "__main__":
    main(*sys.argv[1:6])
