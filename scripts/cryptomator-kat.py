#!/usr/bin/env python3
"""Recomputes the Cryptomator known answers in src/cryptomator/{names,content}.rs independently of
cloakfs: AES-SIV names and directory hashes, and two whole files (SIV_CTRMAC and SIV_GCM) with fixed keys
and nonces, following the vault format 8 specification (docs/FORMAT.md section 7) with pycryptodome.

    PYTHONPATH=target/pylib python3 scripts/cryptomator-kat.py   # .ci/run installs pycryptodome there
"""
import base64
import hashlib
import hmac
import struct

from Crypto.Cipher import AES

ENC = bytes(range(32))
MAC = bytes(range(32, 64))
UUID = b"8c1b5b9e-1f24-4a5e-9d3e-4f1e2b3c4d5e"


def siv(plaintext, associated):
    cipher = AES.new(MAC + ENC, AES.MODE_SIV)
    for data in associated:
        cipher.update(data)
    ciphertext, tag = cipher.encrypt_and_digest(plaintext)
    return tag + ciphertext


def ctr(key, nonce, data):
    return AES.new(key, AES.MODE_CTR, initial_value=nonce, nonce=b"").encrypt(data)


for dir_id in [b"", UUID]:
    print("dir hash", dir_id, base64.b32encode(hashlib.sha1(siv(dir_id, [])).digest()).decode())
for dir_id, name in [(b"", "Reports 2026.pdf"), (UUID, "notes.txt")]:
    print("name", dir_id, repr(name), base64.urlsafe_b64encode(siv(name.encode(), [dir_id])).decode() + ".c9r")

clear = bytes((i * 7) % 256 for i in range(40000))
chunks = [clear[:32768], clear[32768:]]

header_nonce, content_key = bytes([0x10]) * 16, bytes([0x20]) * 32
payload = ctr(ENC, header_nonce, b"\xff" * 8 + content_key)
sealed = header_nonce + payload + hmac.new(MAC, header_nonce + payload, hashlib.sha256).digest()
for index, (chunk, nonce) in enumerate(zip(chunks, [bytes([0x30]) * 16, bytes([0x31]) * 16])):
    body = ctr(content_key, nonce, chunk)
    mac = hmac.new(MAC, header_nonce + struct.pack(">Q", index) + nonce + body, hashlib.sha256).digest()
    sealed += nonce + body + mac
print("SIV_CTRMAC file sha256", hashlib.sha256(sealed).hexdigest())

header_nonce, content_key = bytes([0x40]) * 12, bytes([0x50]) * 32
payload, tag = AES.new(ENC, AES.MODE_GCM, nonce=header_nonce).encrypt_and_digest(b"\xff" * 8 + content_key)
sealed = header_nonce + payload + tag
for index, (chunk, nonce) in enumerate(zip(chunks, [bytes([0x60]) * 12, bytes([0x61]) * 12])):
    cipher = AES.new(content_key, AES.MODE_GCM, nonce=nonce)
    cipher.update(struct.pack(">Q", index) + header_nonce)
    body, tag = cipher.encrypt_and_digest(chunk)
    sealed += nonce + body + tag
print("SIV_GCM file sha256", hashlib.sha256(sealed).hexdigest())
