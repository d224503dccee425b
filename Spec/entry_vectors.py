#!/usr/bin/env python3
"""Independent encoder for the Keyglass v1 key entry (Spec/entry.md), written from the spec alone.

Writes Spec/entry-vectors.json; the Swift tests check the Swift codec against it byte for byte.
Needs Python 3 and the 'cryptography' package (Ed25519 for the chained example).
"""
import json, struct, unicodedata, os
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

def field8(b): return bytes([len(b)]) + b
def field16(b): return struct.pack(">H", len(b)) + b

def ed25519_pub(seed):
    from cryptography.hazmat.primitives import serialization
    k = Ed25519PrivateKey.from_private_bytes(seed)
    return k, k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

def rotation_message(identity, key_type, key, revocation, prev):
    return (b"keyglass/rotation/v1\n" + field8(identity.encode()) + field8(key_type.encode()) + field16(key)
            + bytes([1 if revocation else 0]) + struct.pack(">Q", prev))

def encode(ts, identity, key_type, key, revocation=False, prev=None, sig=None):
    flags = (1 if revocation else 0) | (2 if prev is not None else 0) | (4 if sig is not None else 0)
    out = bytes([1]) + struct.pack(">Q", ts) + field8(identity.encode()) + field8(key_type.encode()) + field16(key) + bytes([flags])
    if prev is not None: out += struct.pack(">Q", prev)
    if sig is not None: out += sig
    return out

alice_sk, alice_pk = ed25519_pub(bytes([1]) * 32)
_, alice_pk2 = ed25519_pub(bytes([2]) * 32)
x25519 = bytes(range(1, 33))
p256_g = bytes.fromhex("036b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296")
zoe = unicodedata.normalize("NFC", "zo\u00eb@example.com")
rot_sig = alice_sk.sign(rotation_message("alice@example.com", "ed25519", alice_pk2, False, 0))

valid = [
    dict(name="ed25519 first key, operator-published",
         fields=dict(timestamp_ms=1700000000000, identity="alice@example.com", key_type="ed25519", public_key=alice_pk.hex()),
         hex=encode(1700000000000, "alice@example.com", "ed25519", alice_pk).hex()),
    dict(name="ed25519 rotation signed by the previous key (chained)",
         fields=dict(timestamp_ms=1700000000500, identity="alice@example.com", key_type="ed25519", public_key=alice_pk2.hex(),
                     previous_index=0, signature=rot_sig.hex(), signer_public_key=alice_pk.hex(),
                     rotation_message=rotation_message("alice@example.com", "ed25519", alice_pk2, False, 0).hex()),
         hex=encode(1700000000500, "alice@example.com", "ed25519", alice_pk2, prev=0, sig=rot_sig).hex()),
    dict(name="x25519 key with a previous entry, unchained",
         fields=dict(timestamp_ms=1700000001000, identity="bob@example.org", key_type="x25519", public_key=x25519.hex(), previous_index=5),
         hex=encode(1700000001000, "bob@example.org", "x25519", x25519, prev=5).hex()),
    dict(name="p256 compressed point (the generator), revocation",
         fields=dict(timestamp_ms=1700000002000, identity="carol", key_type="p256", public_key=p256_g.hex(), revocation=True, previous_index=7),
         hex=encode(1700000002000, "carol", "p256", p256_g, revocation=True, prev=7).hex()),
    dict(name="non-ASCII identity in NFC",
         fields=dict(timestamp_ms=0, identity=zoe, key_type="ed25519", public_key=alice_pk.hex()),
         hex=encode(0, zoe, "ed25519", alice_pk).hex()),
]
good = bytes.fromhex(valid[0]["hex"])
nfd = unicodedata.normalize("NFD", "zo\u00eb@example.com")
invalid = [
    dict(name="trailing byte", hex=(good + b"\x00").hex()),
    dict(name="truncated", hex=good[:-1].hex()),
    dict(name="unknown version 2", hex=(b"\x02" + good[1:]).hex()),
    dict(name="unknown flag bit", hex=(good[:-1] + b"\x08").hex()),
    dict(name="chained flag without previous index", hex=(good[:-1] + b"\x04" + rot_sig).hex()),
    dict(name="identity not in NFC", hex=encode(0, nfd, "ed25519", alice_pk).hex()),
    dict(name="identity with a control character", hex=encode(0, "al\tice", "ed25519", alice_pk).hex()),
    dict(name="empty identity", hex=encode(0, "", "ed25519", alice_pk).hex()),
    dict(name="unknown key type", hex=encode(0, "alice", "rsa", alice_pk).hex()),
    dict(name="ed25519 key of 31 bytes", hex=encode(0, "alice", "ed25519", alice_pk[:31]).hex()),
    dict(name="ed25519 small-order point", hex=encode(0, "alice", "ed25519", bytes(32)).hex()),
    dict(name="x25519 all-zero key", hex=encode(0, "alice", "x25519", bytes(32)).hex()),
    dict(name="p256 point not on the curve", hex=encode(0, "alice", "p256", b"\x02" + bytes(31) + b"\x03").hex()),
    dict(name="p256 bad prefix", hex=encode(0, "alice", "p256", b"\x05" + p256_g[1:]).hex()),
    dict(name="invalid UTF-8 identity", hex=(bytes([1]) + struct.pack(">Q", 0) + field8(b"\xff\xfe") + field8(b"ed25519") + field16(alice_pk) + b"\x00").hex()),
    dict(name="identity with a default-ignorable character (U+034F combining grapheme joiner)", hex=encode(0, "alice\u034f@example.com", "ed25519", alice_pk).hex()),
    dict(name="identity with a variation selector (U+FE0F)", hex=encode(0, "alice\ufe0f", "ed25519", alice_pk).hex()),
    dict(name="identity with a Hangul filler (U+3164)", hex=encode(0, "\u3164alice", "ed25519", alice_pk).hex()),
    dict(name="identity with a blank-looking character (U+2800 braille pattern blank)", hex=encode(0, "alice\u2800", "ed25519", alice_pk).hex()),
]
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "entry-vectors.json")
with open(path, "w") as f:
    json.dump(dict(format="keyglass key entry v1 (Spec/entry.md)", valid=valid, invalid=invalid), f, indent=1, ensure_ascii=False)
    f.write("\n")
print("wrote", path)
