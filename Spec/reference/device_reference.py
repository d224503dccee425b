#!/usr/bin/env python3
"""Independent reference implementation (Python 3 stdlib only) of Spec/directory.md:
device records, the change message, a label's state (its public part: version, newest index, chain;
its private part: devices and tombstones), the rule (DeviceRule.judge, its three checks in order;
check 2's bounds: version 100,000, 1,000 active devices, 10,000 ids, a 1 to 255-byte origin), applying
(step B: every change entry at the label's version + 1 moves the public part, an invalid one too; an
entry at another version moves nothing), the map value (the public part only), the set digest,
sealed changes (canonical encoding and parser), their HMAC commitments, v2 change entries (83 bytes),
and one label's replay by whoever holds its sealed changes (open, judge, compare the set digest). No
map heads are replayed here (lookup_reference.py does). Written from Spec/directory.md alone, without
reading the Swift (Ed25519 group arithmetic reused from keyglass_v2_reference.py; RFC 8032 signing,
libsodium-1.0.18-style verification and P-256 SEC1 checks written here).

Output (device-vectors.json): records, change messages, scripted sequences (each step: the verdict,
the version, the map value, the set digest and, unless malformed, the public entry, the sealed change
with a deterministic opening and the commitment), and sealed changes valid and refused.

Run: python3 device_reference.py [--repo] [--check]
  keyglass_v2_reference.py is imported from this script's own directory (Spec/reference/), or else
  from ../../main/Spec/reference/ (the scratch copy's location); no RFC vector file is read.
  Without --repo the vectors are written to (or, with --check, compared with) device-vectors.json
  beside this script; with --repo, ../vectors/device-vectors.json (Spec/vectors/). --check exits 1
  on any difference."""
import hashlib, hmac, importlib.util, json, os, sys

sys.dont_write_bytecode = True  # never write a __pycache__ into Spec/reference
HERE = os.path.dirname(os.path.abspath(__file__))

def _reference_path():
    for d in (HERE, os.path.join(HERE, '..', '..', 'main', 'Spec', 'reference')):
        p = os.path.join(d, 'keyglass_v2_reference.py')
        if os.path.isfile(p): return os.path.normpath(p)
    sys.exit('keyglass_v2_reference.py not found beside %s (nor in ../../main/Spec/reference)' % __file__)

_spec = importlib.util.spec_from_file_location('keyglass_v2_reference', _reference_path())
ed = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ed)

def sha256(b): return hashlib.sha256(b).digest()
def sha512(b): return hashlib.sha512(b).digest()
def H(s): return sha256(s.encode())
def u8(n): return n.to_bytes(1, 'big')
def u16(n): return n.to_bytes(2, 'big')
def u32(n): return n.to_bytes(4, 'big')
def u64(n): return n.to_bytes(8, 'big')

# ---------------------------------------------------------------- Ed25519 (RFC 8032, pure, SHA-512)
def ed_secret(seed):
    h = sha512(seed)
    a = bytearray(h[:32]); a[0] &= 248; a[31] &= 127; a[31] |= 64
    return int.from_bytes(bytes(a), 'little'), h[32:]

def ed_public(seed):
    a, _ = ed_secret(seed)
    return ed.encode_point(ed.pt_mul(a, ed.BASE))

def ed_sign(seed, msg):
    a, prefix = ed_secret(seed)
    A = ed.encode_point(ed.pt_mul(a, ed.BASE))
    r = int.from_bytes(sha512(prefix + msg), 'little') % ed.L
    R = ed.encode_point(ed.pt_mul(r, ed.BASE))
    k = int.from_bytes(sha512(R + A + msg), 'little') % ed.L
    S = (r + k * a) % ed.L
    return R + S.to_bytes(32, 'little')

# libsodium's ge25519_has_small_order list: y (sign bit ignored) of the points of order 1, 2, 4 and 8,
# and the non-canonical encodings p, p + 1 of 0 and 1.
_Y8 = 2707385501144840649318225287225658788936804267575313519463743609750303402022
SODIUM_SMALL_ORDER_Y = {0, 1, _Y8, ed.P - _Y8, ed.P - 1, ed.P, ed.P + 1}

def sodium_has_small_order(enc):
    return (int.from_bytes(enc, 'little') & ((1 << 255) - 1)) in SODIUM_SMALL_ORDER_Y

def sodium_is_canonical(enc):
    return (int.from_bytes(enc, 'little') & ((1 << 255) - 1)) < ed.P

def ed_verify_reason(pk, msg, sig):
    """None if sig verifies as libsodium 1.0.18's crypto_sign_verify_detached says, else why not:
    S < L, R not of small order, the key canonical and not of small order, then the cofactorless
    equation: the canonical encoding of [S]B - [h]A must be R's 32 bytes."""
    if len(pk) != 32 or len(sig) != 64: return 'length'
    R, S = sig[:32], int.from_bytes(sig[32:], 'little')
    if S >= ed.L: return 'S >= L'
    if sodium_has_small_order(R): return 'R of small order'
    if not sodium_is_canonical(pk): return 'key non-canonical'
    if sodium_has_small_order(pk): return 'key of small order'
    A = ed.decode_point(pk)
    if A is None: return 'key not on the curve'
    k = int.from_bytes(sha512(R + pk + msg), 'little') % ed.L
    check = ed.pt_add(ed.pt_mul(S, ed.BASE), ed.pt_neg(ed.pt_mul(k, A)))
    if ed.encode_point(check) != R: return 'cofactorless equation fails'
    return None

def ed_verify(pk, msg, sig): return ed_verify_reason(pk, msg, sig) is None

def ed_verify_cofactored(pk, msg, sig):
    """RFC 8032 5.1.7's cofactored equation with strict decoding (for notes and self tests only)."""
    A = ed.decode_point(pk); R = ed.decode_point(sig[:32]); S = int.from_bytes(sig[32:], 'little')
    if A is None or R is None or S >= ed.L: return False
    k = int.from_bytes(sha512(sig[:32] + pk + msg), 'little') % ed.L
    return ed.pt_eq(ed.pt_mul(8, ed.pt_mul(S, ed.BASE)), ed.pt_mul(8, ed.pt_add(R, ed.pt_mul(k, A))))

def signing_key_problem(b):
    """None if b is a fully checked Ed25519 public key, else why not."""
    if len(b) != 32: return 'signing key length'
    n = int.from_bytes(b, 'little')
    if (n & ((1 << 255) - 1)) >= ed.P: return 'signing key non-canonical (y >= p)'
    p = ed.decode_point(b)
    if p is None: return 'signing key not on the curve (or x = 0 with sign bit set)'
    if ed.is_small_order(p): return 'signing key of small order'
    if not ed.in_prime_subgroup(p): return 'signing key not in the prime-order subgroup'
    return None

def x25519_public(scalar_bytes):
    """X25519(k, 9) via the birational map u = (1 + y) / (1 - y) of [clamp(k)]B."""
    k = bytearray(scalar_bytes); k[0] &= 248; k[31] &= 127; k[31] |= 64
    Pt = ed.pt_mul(int.from_bytes(bytes(k), 'little'), ed.BASE)
    X, Y, Z, _ = Pt; y = Y * ed.inv(Z) % ed.P
    return ((1 + y) * ed.inv((1 - y) % ed.P) % ed.P).to_bytes(32, 'little')

# ---------------------------------------------------------------- P-256 (SEC1 decoding, curve check)
P256_P = 2**256 - 2**224 + 2**192 + 2**96 - 1
P256_B = 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b
P256_GX = 0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296
P256_GY = 0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5

def p256_rhs(x): return (x * x * x - 3 * x + P256_B) % P256_P

def p256_sqrt(a):
    y = pow(a, (P256_P + 1) // 4, P256_P)
    return y if y * y % P256_P == a % P256_P else None

def p256_problem(k):
    """None if k is a SEC1 encoding of a P-256 point (33 bytes 02/03 or 65 bytes 04, coordinates < p)."""
    if len(k) == 33 and k[0] in (2, 3):
        x = int.from_bytes(k[1:], 'big')
        if x >= P256_P: return 'P-256 x >= p (non-canonical)'
        if p256_sqrt(p256_rhs(x)) is None: return 'P-256 compressed x not on the curve'
        return None
    if len(k) == 65 and k[0] == 4:
        x = int.from_bytes(k[1:33], 'big'); y = int.from_bytes(k[33:], 'big')
        if x >= P256_P or y >= P256_P: return 'P-256 coordinate >= p (non-canonical)'
        if y * y % P256_P != p256_rhs(x): return 'P-256 point not on the curve'
        return None
    return 'P-256 key: not 33 bytes with prefix 02/03 or 65 bytes with prefix 04'

def p256_point(tag):
    """A deterministic P-256 point (x, y) from SHA-256 of tag (cofactor 1: every curve point is in the group)."""
    for ctr in range(1000):
        x = int.from_bytes(H('%s %d' % (tag, ctr)), 'big') % P256_P
        y = p256_sqrt(p256_rhs(x))
        if y is not None: return x, y
    raise ValueError

def p256_compressed(x, y): return bytes([2 + (y & 1)]) + x.to_bytes(32, 'big')
def p256_uncompressed(x, y): return b'\x04' + x.to_bytes(32, 'big') + y.to_bytes(32, 'big')

# ---------------------------------------------------------------- device records
X25519, P256 = 1, 2

class Record:
    def __init__(self, device_id, signing_key, enc_keys):
        self.device_id, self.signing_key, self.enc_keys = device_id, signing_key, list(enc_keys)
    def encode(self): return encode_record(self.device_id, self.signing_key, self.enc_keys)

def encode_record(device_id, signing_key, enc_keys, count=None):
    """Raw encoder (no checks, so it also builds invalid records). enc_keys: [(type, key bytes)]."""
    out = device_id + signing_key + u8(len(enc_keys) if count is None else count)
    for t, k in enc_keys: out += u8(t) + u8(len(k)) + k
    return out

def parse_record(b):
    """Returns a Record, or a string saying why b is refused."""
    if len(b) < 16 + 32 + 1: return 'cut short (before the key count)'
    did, sk, n = b[:16], b[16:48], b[48]
    why = signing_key_problem(sk)
    if why: return why
    if n > 2: return 'encryption key count %d > 2' % n
    pos, keys, last = 49, [], 0
    for _ in range(n):
        if pos + 2 > len(b): return 'cut short (in an encryption key header)'
        t, ln = b[pos], b[pos + 1]; pos += 2
        if pos + ln > len(b): return 'cut short (in an encryption key)'
        k = b[pos:pos + ln]; pos += ln
        if t not in (X25519, P256): return 'unknown encryption key type %d' % t
        if t <= last: return 'encryption key types not strictly increasing'
        last = t
        if t == X25519:
            if ln != 32: return 'X25519 key length %d != 32' % ln
            if k == bytes(32): return 'X25519 key all zero'
        else:
            why = p256_problem(k)
            if why: return why
        keys.append((t, k))
    if pos != len(b): return 'trailing bytes after the last key'
    return Record(did, sk, keys)

# ---------------------------------------------------------------- changes
KINDS = {'add': 1, 'rotate': 2, 'revoke': 3, 'reset': 4}
DOMAIN = b'keyglass-device-change-v1\x00'

def change_message(origin, label, signer_id, previous_index, kind, target):
    assert 1 <= len(origin) <= 255 and len(label) == 32 and len(signer_id) == 16
    return (DOMAIN + u8(len(origin)) + origin + label + signer_id + u64(previous_index)
            + u8(KINDS[kind]) + target)

# ---------------------------------------------------------------- a label's state
class State:
    """Public part: version, newest index, chain (anyone derives it from the entries). Private part:
    active devices and tombstoned ids (derived only by opening every change of the label)."""
    def __init__(self):
        self.version, self.newest, self.chain = 0, None, bytes(32)
        self.active = {}          # id -> Record
        self.tombstoned = set()

    def copy(self):
        s = State(); s.version, s.newest, s.chain = self.version, self.newest, self.chain
        s.active = dict(self.active); s.tombstoned = set(self.tombstoned); return s

    def map_value(self):
        """SHA-256(0x05 || version (8) || newest index (8) || chain (32)): the public part only; None for
        a label never changed (absent from the map)."""
        if self.version == 0: return None
        return map_value_of(self.version, self.newest, self.chain)

    def set_digest(self):
        """The set digest of the private part (defined for every state, also a never-changed one)."""
        return set_digest_of([self.active[i].encode() for i in sorted(self.active)], sorted(self.tombstoned))

def map_value_of(version, newest, chain):
    return sha256(b'\x05' + u64(version) + u64(newest) + chain)

def set_digest_of(records, tombstoned_ids):
    """SHA-256(0x06 || active count (4) || each active record as length (2) || record || tombstone count (4)
    || each tombstoned id), the records and ids in the order given (the caller sorts, or checks the order)."""
    out = b'\x06' + u32(len(records))
    for r in records: out += u16(len(r)) + r
    return sha256(out + u32(len(tombstoned_ids)) + b''.join(tombstoned_ids))

# ---------------------------------------------------------------- the rule
# Check 2's bounds: a label's version, its active devices, the ids it uses (active and tombstoned),
# and the log origin's length (the change message's length byte).
MAX_VERSION = 100000
MAX_ACTIVE = 1000
MAX_IDS = 10000
# row -> (operator verdict, chained verdict); rows with "or" in the spec are split into sub-rows.
TABLE = {
    'add, new id, to a set never changed':  ('first', None),
    'add, new id, otherwise':               ('ghost_device', 'chained'),
    'add, active id':                       ('invalid', 'invalid'),
    'add, tombstoned id':                   ('injected_key', 'injected_key'),
    'rotate, active id, another record':    ('injected_key', 'chained'),
    'rotate, same record':                  ('invalid', 'invalid'),
    'rotate, tombstoned id':                ('injected_key', 'injected_key'),
    'rotate, unknown id':                   ('invalid', 'invalid'),
    'revoke, active id':                    ('operator_revoke', 'chained'),
    'revoke, tombstoned id':                ('invalid', 'invalid'),
    'revoke, unknown id':                   ('invalid', 'invalid'),
    'reset, new id':                        ('account_reset', 'chained'),
    'reset, active id':                     ('injected_key', 'injected_key'),
    'reset, tombstoned id':                 ('injected_key', 'injected_key'),
}

def parse_target(kind, target):
    """A Record (add, rotate, reset) or a 16-byte id (revoke), or a string saying why the target does not
    parse (then the entry is malformed: not a change at all)."""
    if kind == 'revoke':
        return target if len(target) == 16 else 'revoke target of %d bytes, not 16' % len(target)
    return parse_record(target)

def classify(state, kind, t):
    """The table row of a parsed target. An id both active and tombstoned (only an applied attack makes
    one) is judged as active by revoke and as tombstoned by every other change."""
    did = t if kind == 'revoke' else t.device_id
    act, tomb = did in state.active, did in state.tombstoned
    if kind == 'revoke':
        return 'revoke, active id' if act else ('revoke, tombstoned id' if tomb else 'revoke, unknown id')
    if tomb: return kind + ', tombstoned id'
    if kind == 'add':
        if act: return 'add, active id'
        return 'add, new id, to a set never changed' if state.version == 0 else 'add, new id, otherwise'
    if kind == 'rotate':
        if act: return 'rotate, same record' if state.active[did].encode() == t.encode() else 'rotate, active id, another record'
        return 'rotate, unknown id'
    if kind == 'reset':
        return 'reset, active id' if act else 'reset, new id'
    raise ValueError(kind)

def origin_ok(origin): return 1 <= len(origin) <= 255

def authority_problem(state, origin, label, kind, target, auth):
    """Check 1: None if the signer is an active device and its current key's signature verifies.
    With an origin the message cannot carry (not 1 to 255 bytes) there is no message to verify: an
    active signer's change is then left to check 2, which makes every change invalid (same verdict)."""
    signer, sig = auth
    if signer not in state.active: return 'signer not an active device'
    if not origin_ok(origin): return None
    msg = change_message(origin, label, signer, state.newest, kind, target)
    why = ed_verify_reason(state.active[signer].signing_key, msg, sig)
    return None if why is None else 'signature does not verify (%s)' % why

def active_after(state, kind, t):
    """How many devices would be active after the change were it applied: add and rotate put the
    record in the active set, replacing any active record with its id (so a rotation of an id that
    is not active adds a device); reset leaves only its record; revoke never adds one."""
    if kind == 'reset': return 1
    if kind in ('add', 'rotate'): return len(state.active) + (0 if t.device_id in state.active else 1)
    return len(state.active)

def ids_used(state):
    """The ids a label uses: active and tombstoned, each id once (an id both active and tombstoned,
    which only an attack makes, is one id)."""
    return len(set(state.active) | state.tombstoned)

def bounds_problem(state, origin, kind, t):
    """Check 2, in the order of the text: None if no bound is crossed, else (which, why)."""
    if state.version >= MAX_VERSION:
        return 'version', 'label already at version %d' % state.version
    if kind in ('add', 'rotate', 'reset') and active_after(state, kind, t) > MAX_ACTIVE:
        return 'active devices', 'would leave more than %d active devices' % MAX_ACTIVE
    did = t if kind == 'revoke' else t.device_id
    if did not in state.active and did not in state.tombstoned and ids_used(state) >= MAX_IDS:
        return 'ids', 'brings a new id to a label already using %d ids' % ids_used(state)
    if not origin_ok(origin):
        return 'origin', 'log origin of %d bytes (not 1 to 255)' % len(origin)
    return None

def judge(state, origin, label, kind, target, auth):
    """auth: 'operator' or (signer id, signature).
    Returns (verdict, table row or None, reason or None, deciding check).
    verdict 'malformed' (the target does not parse: not a change at all) is outside the rule."""
    t = parse_target(kind, target)
    if isinstance(t, str): return 'malformed', None, 'malformed target: ' + t, 'parse'
    row = classify(state, kind, t)
    if auth != 'operator':
        why = authority_problem(state, origin, label, kind, target, auth)
        if why: return 'invalid', row, why, 'check 1 (signer and signature)'
    b = bounds_problem(state, origin, kind, t)
    if b: return 'invalid', row, b[1], 'check 2 (%s)' % b[0]
    v = TABLE[row][0 if auth == 'operator' else 1]
    assert v is not None, 'a chained change to a never-changed set cannot have an active signer'
    return v, row, None, 'check 3 (table)'

def advance_public(state, index, leaf_hash):
    """The public part after a change entry at log index `index` (leaf hash `leaf_hash`) whose version is
    the label's version + 1: whatever the rule says of the change."""
    s = state.copy()
    s.version += 1; s.newest = index
    s.chain = sha256(b'\x04' + s.chain + u64(index) + leaf_hash)
    return s

def apply_private(state, kind, target, verdict):
    """The private part after the change: an invalid change (or a malformed one) leaves it as it was.
    add, rotate and reset put the record in the active set, replacing any active record with its id
    (reset first tombstones and removes every active device); revoke removes the device and tombstones
    its id. A tombstoned id stays tombstoned."""
    if verdict in ('invalid', 'malformed'): return state
    s = state.copy()
    if kind == 'revoke':
        s.active.pop(target, None); s.tombstoned.add(target)
    else:
        r = parse_record(target)
        if kind == 'reset':
            s.tombstoned |= set(s.active); s.active = {}
        s.active[r.device_id] = r
    return s

def apply(state, index, leaf_hash, kind, target, verdict):
    """The state after a change entry whose version is the label's version + 1 (step B): the public part
    moves on whatever the verdict, invalid included; the private part moves unless the change is
    invalid. A malformed change (its target does not parse) is no change entry: nothing moves."""
    if verdict == 'malformed': return state
    return apply_private(advance_public(state, index, leaf_hash), kind, target, verdict)

# ---------------------------------------------------------------- sealed changes and change entries (step B)
COMMITMENT_KEY = sha256(b'keyglass-commitment-key-v1')
NO_INDEX = 2**64 - 1          # the previous index of a label's first change
OPERATOR, CHAINED = 0, 1
KIND_NAMES = {v: k for k, v in KINDS.items()}
T0 = 1767225600000            # 2026-01-01T00:00:00Z in ms: the entry at log index i is stamped T0 + 1000 * i

def encode_sealed_raw(opening, kind_byte, target, authority_byte, tail, previous_field, digest, target_length=None):
    """Raw encoder (no checks, so it also builds sealed changes a parser must refuse). tail: signer id ||
    signature for a chained change (whatever bytes are given); previous_field: the 8-byte field's integer."""
    return (opening + u8(kind_byte) + u16(len(target) if target_length is None else target_length) + target
            + u8(authority_byte) + tail + u64(previous_field) + digest)

def encode_sealed(opening, kind, target, auth, previous_index, digest):
    """opening (16) || kind (1) || target length (2) || target || authority (1) || [signer (16) || signature
    (64)] || previous index (8; 2^64 - 1 for None) || set digest (32). auth: 'operator' or (signer, signature)."""
    assert len(opening) == 16 and len(digest) == 32
    if auth == 'operator': a, tail = OPERATOR, b''
    else:
        assert len(auth[0]) == 16 and len(auth[1]) == 64
        a, tail = CHAINED, auth[0] + auth[1]
    return encode_sealed_raw(opening, KINDS[kind], target, a, tail, NO_INDEX if previous_index is None else previous_index, digest)

def parse_sealed(b):
    """A dict for a canonical sealed change, else a string saying why it is refused. The target must
    follow the rules of records (add, rotate, reset) or be a 16-byte id (revoke); nothing may follow the
    set digest."""
    if len(b) < 16 + 1 + 2: return 'cut short (before the target)'
    opening, kb, tl = b[:16], b[16], int.from_bytes(b[17:19], 'big')
    if kb not in KIND_NAMES: return 'unknown kind byte %d' % kb
    kind = KIND_NAMES[kb]
    pos = 19 + tl
    if len(b) < pos + 1: return 'cut short (in the target or before the authority)'
    target = b[19:pos]
    t = parse_target(kind, target)
    if isinstance(t, str): return 'target does not parse: ' + t
    a = b[pos]; pos += 1
    if a == OPERATOR: auth = 'operator'
    elif a == CHAINED:
        if len(b) < pos + 80: return 'cut short (in the signer or the signature)'
        auth = (b[pos:pos + 16], b[pos + 16:pos + 80]); pos += 80
    else: return 'unknown authority byte %d' % a
    if len(b) < pos + 8 + 32: return 'cut short (in the previous index or the set digest)'
    if len(b) > pos + 8 + 32: return 'trailing bytes after the set digest'
    prev = int.from_bytes(b[pos:pos + 8], 'big')
    return {'opening': opening, 'kind': kind, 'target': target, 'parsed_target': t, 'auth': auth,
            'previous_index': None if prev == NO_INDEX else prev, 'set_digest': b[pos + 8:]}

def commitment_message(label, version, sealed):
    """opening || label (32) || version (8) || the sealed change after its opening (the HMAC's message)."""
    return sealed[:16] + label + u64(version) + sealed[16:]

def commitment(label, version, sealed):
    """HMAC-SHA256(K, opening || label || version (8) || the sealed change after its opening), K = SHA-256(
    "keyglass-commitment-key-v1"). Computed over the bytes as given (also bytes a parser refuses)."""
    return hmac.new(COMMITMENT_KEY, commitment_message(label, version, sealed), hashlib.sha256).digest()

def encode_change_entry(timestamp, label, version, kind_byte, commit):
    """0x02 || 0x02 || timestamp (8) || label (32) || version (8) || kind (1) || commitment (32): 83 bytes."""
    assert len(label) == 32 and len(commit) == 32
    return b'\x02\x02' + u64(timestamp) + label + u64(version) + u8(kind_byte) + commit

def parse_change_entry(b):
    """A dict for a canonical change entry, else None."""
    if len(b) != 83 or b[0] != 2 or b[1] != 2 or b[50] not in KIND_NAMES: return None
    return {'timestamp': int.from_bytes(b[2:10], 'big'), 'label': b[10:42], 'version': int.from_bytes(b[42:50], 'big'),
            'kind': KIND_NAMES[b[50]], 'commitment': b[51:83]}

def entry_leaf_hash(entry): return sha256(b'\x00' + entry)   # RFC 9162

def opening_for(context, number):
    """The vectors' deterministic openings: SHA-256 of the ASCII string "opening <context> <number>",
    first 16 bytes (a real log draws every opening at random)."""
    return sha256(('opening %s %d' % (context, number)).encode())[:16]

def open_sealed(entry, sealed, newest_before):
    """Opens a parsed change entry with a sealed change, for whoever holds it: the sealed change must
    parse, open the entry's commitment, name the entry's kind, and name the label's newest index before
    the change (None: 2^64 - 1) as its previous index. Returns (parsed sealed change, None) or
    (None, (code, text)); codes: sealed_change_malformed, commitment_mismatch, kind_mismatch,
    previous_index_mismatch (each an alert bad_opening)."""
    p = parse_sealed(sealed)
    if isinstance(p, str): return None, ('sealed_change_malformed', p)
    if not hmac.compare_digest(commitment(entry['label'], entry['version'], sealed), entry['commitment']):
        return None, ('commitment_mismatch', 'the sealed change does not open the entry\'s commitment')
    if p['kind'] != entry['kind']: return None, ('kind_mismatch', 'sealed kind %s, entry kind %s' % (p['kind'], entry['kind']))
    if p['previous_index'] != newest_before:
        return None, ('previous_index_mismatch', 'previous index %s, the label\'s newest index is %s' % (p['previous_index'], newest_before))
    return p, None

def replay_change(state, origin, index, entry_bytes, sealed):
    """One change entry of the label whose state is `state`, at log index `index`, replayed by whoever
    holds its sealed change ("Replaying a log", "Sealed changes"). Returns (outcome, state after, detail).
    outcome: malformed_entry (nothing moves); invalid with detail 'version' (a version other than the
    label's version + 1: not applied at all); bad_opening (the public part moves; the private part cannot
    be derived and is left as it was); else the rule's verdict, or set_mismatch when the set digest is
    not that of the set the rule leaves (the public part moves; the private part is the rule's)."""
    e = parse_change_entry(entry_bytes)
    if e is None: return 'malformed_entry', state, None
    if e['version'] != state.version + 1: return 'invalid', state, 'version'
    pub = advance_public(state, index, entry_leaf_hash(entry_bytes))
    p, why = open_sealed(e, sealed, state.newest)
    if why: return 'bad_opening', pub, why[0]
    verdict = judge(state, origin, e['label'], p['kind'], p['target'], p['auth'])[0]
    assert verdict != 'malformed'   # the sealed change's parser checked the target
    after = apply_private(pub, p['kind'], p['target'], verdict)
    if after.set_digest() != p['set_digest']: return 'set_mismatch', after, verdict
    return verdict, after, None

# ---------------------------------------------------------------- self tests
def self_test():
    # RFC 8032 section 7.1, tests 1-3
    for sk, pk, msg, sig in [
        ('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60',
         'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a', '',
         'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b'),
        ('4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb',
         '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c', '72',
         '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00'),
        ('c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7',
         'fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025', 'af82',
         '6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a')]:
        sk, pk, msg, sig = map(bytes.fromhex, (sk, pk, msg, sig))
        assert ed_public(sk) == pk and ed_sign(sk, msg) == sig and ed_verify(pk, msg, sig), 'RFC 8032 vector'
        assert not ed_verify(pk, msg + b'x', sig)
    # RFC 7748 section 6.1: Alice's X25519 public key
    assert x25519_public(bytes.fromhex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a')).hex() == \
        '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a', 'RFC 7748 vector'
    assert P256_GY * P256_GY % P256_P == p256_rhs(P256_GX), 'P-256 generator'
    assert P256_P % 4 == 3
    # libsodium's small-order list holds exactly the y of the 8 torsion points (and p, p + 1)
    T8 = small_order_points()
    tors = {ed.encode_point(ed.pt_mul(k, T8)) for k in range(8)}
    assert len(tors) == 8 and {int.from_bytes(e, 'little') & ((1 << 255) - 1) for e in tors} == SODIUM_SMALL_ORDER_Y - {ed.P, ed.P + 1}
    check2_self_test()
    sealed_self_test()

def sealed_self_test():
    """Sealed changes round-trip for every kind and both authorities; every proper prefix and every
    one-byte extension of one is refused; HMAC-SHA256 is RFC 4231's (test case 2)."""
    assert hmac.new(b'Jefe', b'what do ya want for nothing?', hashlib.sha256).hexdigest() == \
        '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843', 'RFC 4231 test case 2'
    st = apply(State(), 1, H('x'), 'add', dev_record('A'), 'first')
    op = bytes(range(16)); dg = st.set_digest()
    for kind, tgt in (('add', dev_record('B')), ('rotate', dev_record('A', 1, enc=('x25519', 'p256u'))),
                      ('revoke', dev_id('A')), ('reset', dev_record('R', enc=()))):
        for auth in ('operator', (dev_id('A'), bytes(range(64)))):
            for prev in (None, 0, 1, NO_INDEX - 1):
                b = encode_sealed(op, kind, tgt, auth, prev, dg)
                p = parse_sealed(b)
                assert isinstance(p, dict) and (p['opening'], p['kind'], p['target'], p['auth'], p['previous_index'],
                                                p['set_digest']) == (op, kind, tgt, auth, prev, dg)
                assert all(isinstance(parse_sealed(b[:k]), str) for k in range(len(b)))
                assert all(isinstance(parse_sealed(b + bytes([x])), str) for x in (0, 1, 255))
                c = commitment(LABEL, 2, b)
                e = encode_change_entry(T0, LABEL, 2, KINDS[kind], c)
                assert len(e) == 83 and parse_change_entry(e) == {'timestamp': T0, 'label': LABEL, 'version': 2,
                                                                  'kind': kind, 'commitment': c}
                assert commitment(LABEL, 3, b) != c and commitment(H('bob'), 2, b) != c
    e = encode_change_entry(T0, LABEL, 2, 1, bytes(32))
    assert parse_change_entry(e[:-1]) is None and parse_change_entry(e + b'\x00') is None
    assert all(parse_change_entry(e[:50] + bytes([k]) + e[51:]) is None for k in (0, 5, 255))
    assert parse_change_entry(b'\x01' + e[1:]) is None and parse_change_entry(e[:1] + b'\x03' + e[2:]) is None
    # the map value is the public part only; the set digest of a never-changed label is the empty set's
    assert State().map_value() is None and State().set_digest() == sha256(b'\x06' + bytes(8))
    assert st.map_value() == sha256(b'\x05' + u64(1) + u64(1) + st.chain)

def check2_self_test():
    """Check 2's bounds, each on a state built directly (no replay of 100,000 changes)."""
    proto = parse_record(dev_record('cap'))
    nid = lambda k: u32(k) + bytes(12)
    mk = lambda k, ekeys=(): encode_record(nid(k), proto.signing_key, list(ekeys))
    def j(st, kind, tgt, auth='operator', origin=ORIGIN):
        return judge(st, origin, LABEL, kind, tgt, auth)[::3]
    def signed(st, name, kind, tgt, gen=0, origin=ORIGIN):   # a valid chained authority by device `name`
        return (dev_id(name), ed_sign(dev_seed(name, gen), change_message(origin, LABEL, dev_id(name), st.newest, kind, tgt)))

    # 1,000 active devices after an add, rotate or reset (a rotation of an id that is not active adds one)
    st = State(); st.version, st.newest = 1, 1
    for k in range(1000): st.active[nid(k)] = Record(nid(k), proto.signing_key, [])
    st.tombstoned = {nid(0), nid(1000)}                                         # id 0: active and tombstoned
    assert j(st, 'add', mk(1001)) == ('invalid', 'check 2 (active devices)')       # new id: 1,001
    assert j(st, 'add', mk(1000)) == ('invalid', 'check 2 (active devices)')           # tombstoned id: 1,001
    assert j(st, 'add', mk(0, proto.enc_keys)) == ('injected_key', 'check 3 (table)')        # both: replaces, 1,000
    assert j(st, 'add', mk(1, proto.enc_keys)) == ('invalid', 'check 3 (table)')             # active id
    assert j(st, 'reset', mk(1001)) == ('account_reset', 'check 3 (table)')
    assert j(st, 'rotate', mk(1, proto.enc_keys)) == ('injected_key', 'check 3 (table)')     # active: replaces, 1,000
    assert j(st, 'rotate', mk(0, proto.enc_keys)) == ('injected_key', 'check 3 (table)')     # both: active, replaces
    assert j(st, 'rotate', mk(1000)) == ('invalid', 'check 2 (active devices)')        # tombstoned, not active: 1,001
    assert j(st, 'rotate', mk(1001)) == ('invalid', 'check 2 (active devices)')    # unknown: check 2 first
    assert j(st, 'revoke', nid(1)) == ('operator_revoke', 'check 3 (table)')
    del st.active[nid(5)]
    assert j(st, 'add', mk(1001)) == ('ghost_device', 'check 3 (table)')           # 1,000 is allowed
    assert j(st, 'rotate', mk(1000)) == ('injected_key', 'check 3 (table)')            # tombstoned, 1,000 after
    assert len(apply(st, 2, H('x'), 'rotate', mk(1000), 'injected_key').active) == 1000

    # version 100,000: every change is invalid, whoever makes it; at 99,999 the same changes pass
    A = parse_record(dev_record('A'))
    for v, ok in ((99999, True), (100000, False)):
        st = State(); st.version, st.newest, st.chain = v, 7 * v, H('chain %d' % v)
        st.active = {A.device_id: A}; st.tombstoned = {dev_id('T')}
        want = lambda verdict: (verdict, 'check 3 (table)') if ok else ('invalid', 'check 2 (version)')
        assert j(st, 'add', dev_record('B')) == want('ghost_device')
        assert j(st, 'add', dev_record('B'), signed(st, 'A', 'add', dev_record('B'))) == want('chained')
        assert j(st, 'rotate', dev_record('A', 1)) == want('injected_key')
        assert j(st, 'revoke', dev_id('A')) == want('operator_revoke')
        assert j(st, 'revoke', dev_id('A'), signed(st, 'A', 'revoke', dev_id('A'))) == want('chained')
        assert j(st, 'reset', dev_record('R')) == want('account_reset')
        assert j(st, 'add', dev_record('T', 1)) == want('injected_key')
        bad = signed(st, 'A', 'add', dev_record('B')); bad = (bad[0], bad[1][:5] + bytes([bad[1][5] ^ 1]) + bad[1][6:])
        assert j(st, 'add', dev_record('B'), bad) == ('invalid', 'check 1 (signer and signature)')   # check 1 comes first
        after = apply(st, 7 * v + 1, H('x'), 'add', dev_record('B'), 'ghost_device')
        assert after.version == v + 1 and len(after.map_value()) == 32
        # step B, read literally: an invalid change entry moves the public part, also at version 100,000
        after = apply(st, 7 * v + 1, H('x'), 'add', dev_record('A'), 'invalid')
        assert after.version == v + 1 and after.set_digest() == st.set_digest()

    # 10,000 ids (active and tombstoned, each id once): a new id is refused, a known one is not
    A = parse_record(dev_record('A'))
    st = State(); st.version, st.newest = 3, 3; st.active = {A.device_id: A}
    st.tombstoned = {nid(k) for k in range(9999)}                              # 1 + 9,999 = 10,000 ids
    assert ids_used(st) == 10000
    assert j(st, 'add', dev_record('B')) == ('invalid', 'check 2 (ids)')
    assert j(st, 'add', dev_record('B'), signed(st, 'A', 'add', dev_record('B'))) == ('invalid', 'check 2 (ids)')
    assert j(st, 'reset', dev_record('R')) == ('invalid', 'check 2 (ids)')
    assert j(st, 'rotate', dev_record('U')) == ('invalid', 'check 2 (ids)')                  # unknown id (table: invalid too)
    assert j(st, 'revoke', dev_id('U')) == ('invalid', 'check 2 (ids)')                      # unknown id (table: invalid too)
    assert j(st, 'add', mk(3)) == ('injected_key', 'check 3 (table)')                        # tombstoned: not a new id
    assert j(st, 'rotate', mk(4)) == ('injected_key', 'check 3 (table)')
    assert j(st, 'reset', mk(5)) == ('injected_key', 'check 3 (table)')
    assert j(st, 'rotate', dev_record('A', 1), signed(st, 'A', 'rotate', dev_record('A', 1))) == ('chained', 'check 3 (table)')
    assert j(st, 'revoke', dev_id('A')) == ('operator_revoke', 'check 3 (table)')
    st.tombstoned.discard(nid(0))                                                      # 9,999 ids: one more is allowed
    assert j(st, 'add', dev_record('B')) == ('ghost_device', 'check 3 (table)')
    st.tombstoned.add(A.device_id)                                                     # A both active and tombstoned:
    assert ids_used(st) == 9999                                                 # still 9,999 ids (A counted once)
    assert j(st, 'add', dev_record('B')) == ('ghost_device', 'check 3 (table)')

    # the log origin: 1 to 255 bytes, else every change is invalid (a malformed target stays malformed)
    for origin in (b'', b'x' * 256):
        assert j(State(), 'add', dev_record('A'), origin=origin) == ('invalid', 'check 2 (origin)')
        assert j(State(), 'reset', dev_record('A'), origin=origin) == ('invalid', 'check 2 (origin)')
        assert j(State(), 'add', dev_record('A')[:-1], origin=origin) == ('malformed', 'parse')
    assert j(State(), 'add', dev_record('A'), origin=b'x' * 255) == ('first', 'check 3 (table)')
    assert j(State(), 'add', dev_record('A'), origin=b'x') == ('first', 'check 3 (table)')
    st = apply(State(), 1, H('x'), 'add', dev_record('A'), 'first')
    for origin in (b'', b'x' * 256):
        for kind, tgt in (('add', dev_record('B')), ('revoke', dev_id('A')), ('rotate', dev_record('A', 1))):
            assert j(st, kind, tgt, origin=origin) == ('invalid', 'check 2 (origin)')
            # an active signer's signature over the 255-byte truncation of such an origin changes nothing
            sig = signed(st, 'A', kind, tgt, origin=(origin or b'x')[:255])
            assert j(st, kind, tgt, sig, origin=origin) == ('invalid', 'check 2 (origin)')
        assert j(st, 'add', dev_record('B'), signed(st, 'B', 'add', dev_record('B')), origin=origin) == \
            ('invalid', 'check 1 (signer and signature)')                             # signer not active: check 1
    assert j(st, 'revoke', dev_id('A'), signed(st, 'A', 'revoke', dev_id('A'))) == ('chained', 'check 3 (table)')

# ---------------------------------------------------------------- deterministic material
PFX = 'keyglass-device-ref'
def dev_id(name): return H('%s device id %s' % (PFX, name))[:16]
def dev_seed(name, gen=0): return H('%s signing seed %s %d' % (PFX, name, gen))

def dev_record(name, gen=0, enc=('x25519',)):
    keys = []
    for e in enc:
        if e == 'x25519': keys.append((X25519, x25519_public(H('%s x25519 %s %d' % (PFX, name, gen)))))
        else:
            x, y = p256_point('%s p256 %s %d' % (PFX, name, gen))
            keys.append((P256, p256_compressed(x, y) if e == 'p256c' else p256_uncompressed(x, y)))
    return encode_record(dev_id(name), ed_public(dev_seed(name, gen)), keys)

def small_order_points():
    for t in range(1000):
        q = ed.decode_point(H('%s torsion %d' % (PFX, t)))
        if q is not None:
            T = ed.pt_mul(ed.L, q)
            if not ed.is_identity(ed.pt_mul(4, T)): return T   # order exactly 8
    raise ValueError

# ---------------------------------------------------------------- scripted sequences
ORIGIN = b'keyglass.example/log/v2'
OTHER_ORIGIN = b'other.example/log/v2'
LABEL = H('alice@example.com')

class Sequence:
    def __init__(self, name, coverage, extras):
        self.name, self.state, self.index, self.steps = name, State(), 1, []
        self.coverage, self.extras, self.ever_changed = coverage, extras, False
        self.seeds = {}  # device id -> current signing seed (the scripting side's knowledge)

    def step(self, kind, target, auth, expect, note, extra=None, entry_version=None):
        """One scripted change at the next log index. Unless it is malformed it is sealed (opening:
        opening_for(sequence name, index)) and written as a change entry at version entry_version
        (default: the label's version + 1; another version is not applied at all)."""
        i = self.index
        before = self.state
        version = before.version + 1 if entry_version is None else entry_version
        if version != before.version + 1:
            verdict, row, decided = 'invalid', None, 'version'
            why = 'entry version %d is not the label\'s version + 1 (%d): not applied at all' % (version, before.version + 1)
        else:
            verdict, row, why, decided = judge(before, ORIGIN, LABEL, kind, target, auth)
        assert verdict == expect, (self.name, i, note, verdict, row, why)
        authority = 'operator' if auth == 'operator' else 'chained'
        if row is not None and (decided == 'check 3 (table)' or row == 'add, new id, to a set never changed'):
            self.coverage.add((row, authority))
        if extra: self.extras.add(extra)
        entry = sealed = commit = h = None
        if verdict == 'malformed':
            # no sealed change can be made (its parser refuses the target), so no change entry is written
            raw = encode_sealed_raw(opening_for(self.name, i), KINDS[kind], target, OPERATOR if auth == 'operator' else CHAINED,
                                    b'' if auth == 'operator' else auth[0] + auth[1],
                                    NO_INDEX if before.newest is None else before.newest, before.set_digest())
            assert isinstance(parse_sealed(raw), str)
        else:
            applied = decided != 'version'
            digest = apply_private(before, kind, target, verdict).set_digest() if applied else before.set_digest()
            sealed = encode_sealed(opening_for(self.name, i), kind, target, auth, before.newest, digest)
            commit = commitment(LABEL, version, sealed)
            entry = encode_change_entry(T0 + 1000 * i, LABEL, version, KINDS[kind], commit)
            h = entry_leaf_hash(entry)
            if applied: self.state = apply(before, i, h, kind, target, verdict)
        if verdict == 'malformed' or decided == 'version': assert self.state is before
        mv = self.state.map_value()
        self.steps.append({
            'index': i, 'leaf_hash_hex': h.hex() if h else None, 'kind': kind, 'target_hex': target.hex(),
            'authority': 'operator' if auth == 'operator' else {'signer_hex': auth[0].hex(), 'signature_hex': auth[1].hex()},
            'verdict': verdict, 'map_value_hex': mv.hex() if mv else None, 'version': self.state.version,
            'set_digest_hex': self.state.set_digest().hex(),
            'entry_hex': entry.hex() if entry else None,
            'sealed_change_hex': sealed.hex() if sealed else None,
            'commitment_hex': commit.hex() if commit else None,
            'note': note, 'table_row': row, 'decided_by': decided, 'invalid_because': why,
            'entry_version': version if entry else None,
            'previous_index': (before.newest if entry else None),
            'newest_index': self.state.newest, 'chain_hex': self.state.chain.hex(),
            'active_ids_hex': [d.hex() for d in sorted(self.state.active)],
            'tombstoned_ids_hex': [d.hex() for d in sorted(self.state.tombstoned)]})
        self.index += 1
        return verdict

    def op(self, kind, target, expect, note, extra=None, entry_version=None):
        return self.step(kind, target, 'operator', expect, note, extra, entry_version)

    def ch(self, kind, target, signer, expect, note, seed=None, prev=None, origin=None, sig_mutate=None, sig_make=None, extra=None,
           entry_version=None):
        """signer: device name; seed: the signing seed actually used (default: the signer's generation 0);
        sig_make(seed, msg): builds a special signature instead of RFC 8032 signing."""
        prev = self.state.newest if prev is None else prev
        msg = change_message(origin or ORIGIN, LABEL, dev_id(signer), 0 if prev is None else prev, kind, target)
        sig = (sig_make or ed_sign)(seed or dev_seed(signer), msg)
        if sig_mutate: sig = sig_mutate(sig)
        return self.step(kind, target, (dev_id(signer), sig), expect, note, extra, entry_version)

    def out(self, description):
        return {'name': self.name, 'description': description, 'steps': self.steps}

def sig_fixed_R(R, holds):
    """A signature with the given R and S = h*a: [S]B - [h]A is the identity. holds: which equation the
    result satisfies ('cofactorless': R is the identity; 'cofactored': R of small order; None: neither
    under strict decoding), asserted here."""
    def make(seed, msg):
        a, _ = ed_secret(seed); A = ed_public(seed)
        h = int.from_bytes(sha512(R + A + msg), 'little') % ed.L
        sig = R + (h * a % ed.L).to_bytes(32, 'little')
        chk = ed.encode_point(ed.pt_add(ed.pt_mul(h * a % ed.L, ed.BASE), ed.pt_neg(ed.pt_mul(h, ed.decode_point(A)))))
        assert (chk == R) == (holds == 'cofactorless')
        assert ed_verify_cofactored(A, msg, sig) == (holds is not None)
        assert ed_verify_reason(A, msg, sig) == 'R of small order'
        return sig
    return make

def sig_mixed_R(seed, msg):
    """R' = rB + T (T of order 8), S = r + h'a: cofactored verification accepts, cofactorless refuses."""
    a, prefix = ed_secret(seed); A = ed_public(seed)
    r = int.from_bytes(sha512(prefix + msg), 'little') % ed.L
    R = ed.encode_point(ed.pt_add(ed.pt_mul(r, ed.BASE), small_order_points()))
    h = int.from_bytes(sha512(R + A + msg), 'little') % ed.L
    sig = R + ((r + h * a) % ed.L).to_bytes(32, 'little')
    assert ed_verify_cofactored(A, msg, sig) and ed_verify_reason(A, msg, sig) == 'cofactorless equation fails'
    return sig

def build_sequences(coverage, extras):
    seqs = []
    rid = lambda n: dev_id(n)

    # 1. the owner's own life, and every way a chained authority fails
    s = Sequence('owner-chained', coverage, extras)
    s.op('add', dev_record('A'), 'first', 'operator registers the first device A')
    s.ch('add', dev_record('B', enc=('x25519', 'p256c')), 'A', 'chained', 'A adds B (previous index = 1, the first entry)')
    s.ch('rotate', dev_record('B', 1, enc=('x25519', 'p256u')), 'B', 'chained', 'B rotates its own keys (new signing key too)')
    s.ch('add', dev_record('C'), 'A', 'chained', 'A adds C')
    s.ch('revoke', rid('C'), 'B', 'chained', 'B (signing with its rotated key) revokes C', seed=dev_seed('B', 1))
    s.ch('add', dev_record('D'), 'A', 'invalid', 'replay: A signed over a stale previous index (4, newest is 5); invalid, '
         'yet its entry moves the public part (version 6, newest index 6)',
         prev=4, extra='stale previous index')
    s.ch('add', dev_record('D'), 'A', 'invalid', 'signed by A over another origin', origin=OTHER_ORIGIN, extra='other origin')
    s.ch('add', dev_record('D'), 'B', 'invalid', "claims signer B but signed with A's key", seed=dev_seed('A'),
         extra='claimed by another active device')
    s.ch('add', dev_record('D'), 'B', 'invalid', "signed with B's old (rotated-away) key", seed=dev_seed('B', 0),
         extra='signer stale key')
    s.ch('add', dev_record('D'), 'C', 'invalid', 'signed by C, a revoked device', extra='revoked signer')
    s.ch('add', dev_record('D'), 'X', 'invalid', 'signed by X, never a device of the label', extra='unknown signer')
    s.ch('add', dev_record('D'), 'A', 'invalid', 'signature with one bit flipped',
         sig_mutate=lambda g: g[:5] + bytes([g[5] ^ 1]) + g[6:], extra='bad signature')
    s.ch('add', dev_record('D'), 'A', 'invalid', 'signature with S replaced by S + L (S >= L: libsodium and RFC 8032 refuse it)',
         sig_mutate=lambda g: g[:32] + (int.from_bytes(g[32:], 'little') + ed.L).to_bytes(32, 'little'), extra='S >= L')
    s.ch('add', dev_record('B', 1, enc=('x25519', 'p256u')), 'A', 'invalid', 'A adds B again (active id)')
    s.ch('rotate', dev_record('B', 1, enc=('x25519', 'p256u')), 'A', 'invalid', "A 'rotates' B to its current record")
    s.ch('rotate', dev_record('D'), 'A', 'invalid', 'A rotates D, an unknown id')
    s.ch('revoke', rid('C'), 'A', 'invalid', 'A revokes C again (tombstoned)')
    s.ch('revoke', rid('D'), 'A', 'invalid', 'A revokes D, an unknown id')
    bad = encode_record(dev_id('D'), ed_public(dev_seed('D')), [(X25519, bytes(32))])
    s.ch('add', bad, 'A', 'malformed', 'A adds a record that does not parse (all-zero X25519 key): malformed, not a change (no sealed change can hold it: no entry is written)',
         extra='malformed target')
    s.ch('add', dev_record('D'), 'A', 'chained', 'A adds D (previous index 18: the invalid entries moved the newest index, '
         'the malformed step 19 wrote no entry)')
    s.ch('rotate', encode_record(dev_id('A'), ed_public(dev_seed('A')), []), 'B', 'chained',
         "B rotates A's record (another device's): same signing key, encryption keys dropped", seed=dev_seed('B', 1))
    s.ch('reset', dev_record('R', enc=('p256c',)), 'A', 'chained', 'A resets the set to R (A, B, D tombstoned)')
    s.ch('add', dev_record('S', enc=()), 'R', 'chained', 'R adds S')
    s.ch('revoke', rid('S'), 'S', 'chained', 'S revokes itself')
    s.ch('add', dev_record('T'), 'A', 'invalid', 'A, tombstoned by the reset, tries to add T', extra='signer tombstoned by reset')
    seqs.append(s.out('Honest chained changes, every way a chained authority fails, the invalid rows signed by an active device, a chained reset.'))

    # 2. operator: honest and visible changes, invalid rows, a ghost, a reset and the owner's chained add after it
    s = Sequence('operator', coverage, extras)
    s.op('add', dev_record('A'), 'first', 'operator registers A')
    s.op('add', dev_record('G'), 'ghost_device', 'operator adds G to a set already changed')
    s.op('revoke', rid('G'), 'operator_revoke', 'operator revokes G: a short-lived ghost')
    s.op('add', dev_record('A', 1), 'invalid', 'operator adds A (active id) with other keys')
    s.op('rotate', dev_record('A'), 'invalid', "operator 'rotates' A to its current record")
    s.op('rotate', dev_record('U'), 'invalid', 'operator rotates U, an unknown id')
    s.op('revoke', rid('G'), 'invalid', 'operator revokes G again (tombstoned)')
    s.op('revoke', rid('U'), 'invalid', 'operator revokes U (unknown)')
    s.op('revoke', rid('A')[:15], 'malformed', 'revoke target of 15 bytes: malformed, not a change (no sealed change can hold it: no entry is written)', extra='malformed target')
    s.op('add', dev_record('U')[:-1], 'malformed', 'add target cut short: malformed, not a change (no sealed change can hold it: no entry is written)', extra='malformed target')
    s.op('reset', dev_record('R', enc=('x25519', 'p256u')), 'account_reset', 'operator resets to R (A tombstoned)')
    s.ch('add', dev_record('N', enc=('x25519', 'p256c')), 'R', 'chained', "the owner's new device R adds N (previous index = the reset's)")
    s.ch('add', dev_record('Z'), 'A', 'invalid', 'A, tombstoned by the reset, signs an add', extra='signer tombstoned by reset')
    s.ch('revoke', rid('N') + b'\x00', 'R', 'malformed',
         'revoke target of 17 bytes, signed by active R over it: malformed, not invalid (parsing comes before the rule; no entry is written)',
         extra='malformed target')
    seqs.append(s.out('Operator changes: first, ghost, operator revoke, every invalid operator row, account reset, then the owner continues.'))

    # 3. operator attacks on tombstoned ids and an active device
    s = Sequence('operator-attacks', coverage, extras)
    s.op('add', dev_record('A'), 'first', 'operator registers A')
    for n in ('T1', 'T2', 'T3'): s.ch('add', dev_record(n), 'A', 'chained', 'A adds ' + n)
    s.ch('revoke', rid('T1'), 'A', 'chained', 'A revokes T1')
    s.op('revoke', rid('T2'), 'operator_revoke', 'operator revokes T2')
    s.ch('revoke', rid('T3'), 'A', 'chained', 'A revokes T3')
    s.op('add', dev_record('T1', 1), 'injected_key', 'operator re-adds tombstoned T1 with new keys (applied: T1 active and still tombstoned)')
    s.op('rotate', dev_record('T2', 1), 'injected_key', 'operator "rotates" tombstoned T2 (applied: T2 active and still tombstoned)')
    s.op('rotate', dev_record('A', 1), 'injected_key', "operator rotates active A's keys")
    s.ch('add', dev_record('E'), 'A', 'invalid', "A signs with its own (generation 0) key, no longer A's current key")
    s.ch('add', dev_record('E'), 'A', 'chained', "the operator's key for A signs an add (a chained verdict: the rule cannot tell)",
         seed=dev_seed('A', 1))
    s.op('reset', dev_record('T3', 1), 'injected_key', 'operator resets to tombstoned T3 (everything active tombstoned; T3 active)')
    seqs.append(s.out('Operator attacks: re-adding, rotating and resetting to tombstoned ids, rotating an active device.'))

    # 4. chained changes that are still attacks (a compromised device or other client software)
    s = Sequence('chained-attacks', coverage, extras)
    s.op('add', dev_record('A'), 'first', 'operator registers A')
    for n in ('T1', 'T2', 'T3'): s.ch('add', dev_record(n), 'A', 'chained', 'A adds ' + n)
    for n in ('T1', 'T2', 'T3'): s.ch('revoke', rid(n), 'A', 'chained', 'A revokes ' + n)
    s.ch('add', dev_record('T1', 1), 'A', 'injected_key', 'A re-adds tombstoned T1')
    s.ch('rotate', dev_record('T2', 1), 'A', 'injected_key', 'A "rotates" tombstoned T2')
    s.ch('reset', dev_record('T3', 1), 'A', 'injected_key', 'A resets to tombstoned T3')
    seqs.append(s.out('Chained attacks on tombstoned ids.'))

    # 5. resets to an active id, both authorities
    s = Sequence('reset-to-active-id', coverage, extras)
    s.op('add', dev_record('A'), 'first', 'operator registers A')
    s.ch('add', dev_record('B'), 'A', 'chained', 'A adds B')
    s.ch('reset', dev_record('B', 1), 'A', 'injected_key', 'A resets to B (active id) with new keys: A and B tombstoned, B active')
    seqs.append(s.out('A chained reset naming an active id.'))
    s = Sequence('operator-reset-to-active-id', coverage, extras)
    s.op('add', dev_record('A'), 'first', 'operator registers A')
    s.op('reset', dev_record('A', 1), 'injected_key', 'operator resets to A (active id) with new keys')
    seqs.append(s.out('An operator reset naming an active id.'))
    # 6. a reset as the first change, an emptied set
    s = Sequence('first-reset-and-empty-set', coverage, extras)
    s.op('reset', dev_record('R'), 'account_reset', 'operator reset as the very first change: account_reset')
    s.ch('revoke', rid('R'), 'R', 'chained', 'R revokes itself: the set is changed and has no active device')
    s.ch('add', dev_record('N'), 'R', 'invalid', 'R, now tombstoned, signs an add')
    s.op('add', dev_record('N'), 'ghost_device', 'operator adds N to the empty (but changed) set')
    s.op('reset', dev_record('M', enc=('p256u',)), 'account_reset', 'operator resets to M (N tombstoned)')
    seqs.append(s.out('A reset as the first change, a device revoking itself, an empty set after changes (ghost add, operator reset).'))

    # 7. ids both active and tombstoned: revoke judges them as active, every other change as tombstoned
    s = Sequence('active-and-tombstoned', coverage, extras)
    s.op('add', dev_record('A'), 'first', 'operator registers A')
    s.ch('add', dev_record('T1'), 'A', 'chained', 'A adds T1')
    s.ch('add', dev_record('T2'), 'A', 'chained', 'A adds T2')
    s.ch('revoke', rid('T1'), 'A', 'chained', 'A revokes T1')
    s.ch('revoke', rid('T2'), 'A', 'chained', 'A revokes T2')
    s.op('add', dev_record('T1', 1), 'injected_key', 'operator re-adds tombstoned T1: T1 now active and tombstoned')
    s.op('rotate', dev_record('T1', 2), 'injected_key', 'operator rotates T1 (active and tombstoned): row "rotate, tombstoned id"',
         extra='both: operator rotate')
    s.ch('rotate', dev_record('T1', 3), 'T1', 'injected_key',
         'T1 rotates itself with its current (operator-installed) key: judged as tombstoned, injected_key (as active it would be chained)',
         seed=dev_seed('T1', 2), extra='both: chained rotate')
    s.ch('add', dev_record('T1', 4), 'A', 'injected_key',
         'A adds T1 (active and tombstoned) with other keys: row "add, tombstoned id" (as active it would be invalid)', extra='both: add')
    s.ch('add', dev_record('E'), 'T1', 'chained', 'T1 (active, though tombstoned) signs an add of E with its current key',
         seed=dev_seed('T1', 4), extra='both: signer')
    s.ch('revoke', rid('T1'), 'A', 'chained', 'A revokes T1 (active and tombstoned): row "revoke, active id"', extra='both: chained revoke')
    s.ch('revoke', rid('T1'), 'A', 'invalid', 'A revokes T1 again: only tombstoned now')
    s.ch('add', dev_record('T2', 1), 'E', 'injected_key', 'E re-adds tombstoned T2: T2 active and tombstoned')
    s.op('revoke', rid('T2'), 'operator_revoke', 'operator revokes T2 (active and tombstoned): row "revoke, active id"',
         extra='both: operator revoke')
    s.op('rotate', dev_record('T1', 5), 'injected_key', 'operator "rotates" tombstoned T1: T1 active and tombstoned again')
    s.op('reset', dev_record('T1', 6), 'injected_key',
         'operator resets to T1 (active and tombstoned): row "reset, tombstoned id"; A, E, T1 tombstoned, T1 active', extra='both: reset')
    s.ch('revoke', rid('T1'), 'T1', 'chained', 'T1 (active and tombstoned) revokes itself: the set is empty',
         seed=dev_seed('T1', 6))
    seqs.append(s.out('Ids both active and tombstoned (made by injected_key): revoke judges such an id as active, '
                      'every other change as tombstoned; such a device signs with its current key.'))

    # 8. libsodium-1.0.18-style verification: signatures other verifiers may accept
    s = Sequence('signature-edge-cases', coverage, extras)
    s.op('add', dev_record('A'), 'first', 'operator registers A')
    ident = ed.encode_point(ed.IDENT)
    s.ch('add', dev_record('B'), 'A', 'invalid',
         'R = the identity (01 00..00), S = h*a: the cofactorless equation holds, but R is of small order',
         sig_make=sig_fixed_R(ident, 'cofactorless'), extra='R identity')
    s.ch('add', dev_record('B'), 'A', 'invalid',
         'R = p + 1 (a non-canonical identity, ee ff..7f), S = h*a: R of small order (and not canonical)',
         sig_make=sig_fixed_R((ed.P + 1).to_bytes(32, 'little'), None), extra='R non-canonical identity')
    s.ch('add', dev_record('B'), 'A', 'invalid',
         'R = a point of order 8, S = h*a: the cofactored equation holds, but R is of small order',
         sig_make=sig_fixed_R(ed.encode_point(small_order_points()), 'cofactored'), extra='R order 8')
    s.ch('add', dev_record('B'), 'A', 'invalid',
         'R = rB + a point of order 8, S = r + h*a: the cofactored equation holds, the cofactorless one does not',
         sig_make=sig_mixed_R, extra='R mixed order')
    s.ch('add', dev_record('B'), 'A', 'chained', 'A adds B with an ordinary signature (previous index 5: the invalid entries moved it)')
    seqs.append(s.out('Signatures checked as libsodium 1.0.18 does: R of small order refused, the cofactorless equation.'))

    # 9. a literal reading of check 3: a "same record" rotate of an id both active and tombstoned
    s = Sequence('literal-readings', coverage, extras)
    s.op('add', dev_record('A'), 'first', 'operator registers A')
    s.ch('add', dev_record('T'), 'A', 'chained', 'A adds T')
    s.ch('revoke', rid('T'), 'A', 'chained', 'A revokes T')
    s.op('add', dev_record('T', 1), 'injected_key', 'operator re-adds tombstoned T: T active and tombstoned')
    s.op('rotate', dev_record('T', 1), 'injected_key',
         'operator "rotates" T to its current record: judged as tombstoned, row "rotate, tombstoned id" (not "rotate, same record")')
    s.ch('rotate', dev_record('T', 1), 'T', 'injected_key',
         'T "rotates" itself to its current record: judged as tombstoned, row "rotate, tombstoned id" (not "rotate, same record")',
         seed=dev_seed('T', 1))
    seqs.append(s.out('Literal reading: an id both active and tombstoned is judged as tombstoned by a rotate, so a rotate '
                      'to its current record is injected_key, not invalid.'))

    # 10. step B: an invalid change entry moves the public part; an entry at another version moves nothing
    s = Sequence('public-part', coverage, extras)
    s.op('add', dev_record('A'), 'first', 'operator registers A')
    s.op('add', dev_record('A', 1), 'invalid', 'operator adds A (active id) again: invalid, yet version 2, newest index 2 '
         '(the map value moves, the set digest does not)', extra='invalid moves the public part')
    s.ch('add', dev_record('B'), 'A', 'chained', 'A adds B signed over previous index 2, the invalid entry (the newest index)',
         extra='previous index names an invalid entry')
    s.ch('add', dev_record('C'), 'A', 'invalid', 'A signs an add of C over previous index 1 (the newest valid change, not the '
         'newest index 3): stale', prev=1)
    s.op('add', dev_record('D'), 'invalid', 'an entry at version 6 (the label is at version 4): not applied at all, nothing moves',
         entry_version=6, extra='version skipped')
    s.op('add', dev_record('D'), 'invalid', 'an entry at version 4 again (a replayed version): not applied at all, nothing moves',
         entry_version=4, extra='version repeated')
    s.ch('add', dev_record('D'), 'A', 'chained', 'A adds D signed over previous index 4 (entries at a wrong version do not move it)')
    seqs.append(s.out('Step B: every change entry at the label\'s version + 1 moves the public part (version, newest index, '
                      'chain), an invalid one too, leaving the devices and tombstones as they were; an entry at another '
                      'version is not applied at all.'))

    # 11. invalid changes to a never-changed label: the label is then in the map, and no longer "never changed"
    s = Sequence('invalid-first-changes', coverage, extras)
    s.ch('add', dev_record('A'), 'A', 'invalid', 'chained add to a never-changed label (previous index encoded as 0 in the '
         'message, 2^64 - 1 in the sealed change): no signer can be active; the label enters the map at version 1',
         extra='chained to never-changed')
    s.op('revoke', rid('A'), 'invalid', 'operator revokes an unknown id (version 2)')
    s.op('add', dev_record('A'), 'ghost_device', 'operator adds A: the label is at version 2, so its set counts as changed '
         '("never changed" read as version 0, the map\'s sense): row "add, new id, otherwise"', extra='add after invalid changes only')
    s.op('reset', dev_record('R'), 'account_reset', 'operator resets to R (A tombstoned)')
    seqs.append(s.out('Invalid changes as a label\'s first entries move its public part (it enters the map with an empty set); '
                      'an operator add after them is judged with "never changed" meaning version 0.'))
    return seqs

# ---------------------------------------------------------------- records and messages
def build_records():
    valid = [
        ('no encryption key', dev_record('R0', enc=())),
        ('one X25519 key', dev_record('R1', enc=('x25519',))),
        ('one P-256 key, 33 bytes compressed', dev_record('R2', enc=('p256c',))),
        ('one P-256 key, 65 bytes uncompressed', dev_record('R3', enc=('p256u',))),
        ('X25519 and P-256 (65 bytes)', dev_record('R4', enc=('x25519', 'p256u'))),
        ('X25519 and P-256 (33 bytes compressed)', dev_record('R5', enc=('x25519', 'p256c'))),
    ]
    # make sure both compressed prefixes appear
    prefixes = {parse_record(b).enc_keys[-1][1][0] for _, b in valid if parse_record(b).enc_keys and parse_record(b).enc_keys[-1][0] == P256}
    k = 6
    while not {2, 3} <= prefixes:
        b = dev_record('R%d' % k, enc=('x25519', 'p256c')); pk = parse_record(b).enc_keys[-1][1]
        if pk[0] not in prefixes: valid.append(('X25519 and P-256 (33 bytes, prefix %02x)' % pk[0], b)); prefixes.add(pk[0])
        k += 1
    out = []
    for what, b in valid:
        r = parse_record(b)
        assert isinstance(r, Record) and r.encode() == b, what
        out.append({'hex': b.hex(), 'valid': True, 'what': what, 'device_id_hex': r.device_id.hex(),
                    'signing_key_hex': r.signing_key.hex(),
                    'encryption_keys': [{'type': t, 'key_hex': kk.hex()} for t, kk in r.enc_keys]})

    did, sk = dev_id('V'), ed_public(dev_seed('V'))
    xk = x25519_public(H(PFX + ' x25519 V'))
    px, py = p256_point(PFX + ' p256 V')
    pc, pu = p256_compressed(px, py), p256_uncompressed(px, py)
    good = encode_record(did, sk, [(X25519, xk), (P256, pu)])
    assert isinstance(parse_record(good), Record)
    T8 = small_order_points()
    A = ed.decode_point(sk)
    # non-canonical signing key: y = p + k (k < 19) whose reduction decodes
    nonc = []
    for kk in range(19):
        for sign in (0, 1):
            enc = ((ed.P + kk) | (sign << 255)).to_bytes(32, 'little')
            red = ed.decode_point((kk | (sign << 255)).to_bytes(32, 'little'))
            if red is not None: nonc.append((kk, sign, enc, red))
    assert not any(ed.in_prime_subgroup(d) and not ed.is_small_order(d) for _, _, _, d in nonc)
    kk, sign, nonc_key, red = next(((a, b, c, d) for a, b, c, d in nonc if not ed.is_small_order(d)), nonc[0])
    off_y = 0
    while ed.recover_x(off_y, 0) is not None: off_y += 1
    # a P-256 x with no y
    bx = 0
    while p256_sqrt(p256_rhs(bx)) is not None: bx += 1
    # x + p < 2^256 with x on the curve
    cx = 0
    while p256_sqrt(p256_rhs(cx)) is None: cx += 1
    assert cx + P256_P < 2**256
    inval = [
        ('cut short: 10 bytes (inside the device id)', good[:10]),
        ('cut short: 40 bytes (inside the signing key)', good[:40]),
        ('cut short: no key count', good[:48]),
        ('cut short: count 1, key header missing', encode_record(did, sk, [], count=1)),
        ('cut short: inside the X25519 key (length 32, 20 bytes present)', encode_record(did, sk, [(X25519, xk)])[:-12]),
        ('cut short: last byte of the P-256 key missing', good[:-1]),
        ('trailing byte after the last key', good + b'\x00'),
        ('trailing byte after a count of 0', encode_record(did, sk, []) + b'\x01'),
        ('encryption key count 3 (X25519, P-256, then nothing)', encode_record(did, sk, [(X25519, xk), (P256, pu)], count=3)),
        ('encryption key count 255, no keys', encode_record(did, sk, [], count=255)),
        ('key types out of order (P-256 then X25519)', encode_record(did, sk, [(P256, pu), (X25519, xk)])),
        ('the same type twice (X25519, X25519)', encode_record(did, sk, [(X25519, xk), (X25519, x25519_public(H(PFX + ' x25519 V2')))])),
        ('the same type twice (P-256, P-256)', encode_record(did, sk, [(P256, pc), (P256, pu)])),
        ('unknown key type 3', encode_record(did, sk, [(3, xk)])),
        ('unknown key type 0', encode_record(did, sk, [(0, xk)])),
        ('unknown key type 3 after a valid X25519 key', encode_record(did, sk, [(X25519, xk), (3, xk)])),
        ('signing key of small order (order 8)', encode_record(did, ed.encode_point(T8), [(X25519, xk)])),
        ('signing key is the identity (small order)', encode_record(did, ed.encode_point(ed.IDENT), [(X25519, xk)])),
        ('signing key non-canonical: y = p + %d >= p, sign %d (reduced mod p it decodes to a point of large order, '
         'though not in the prime-order subgroup: no y < 19 gives one)' % (kk, sign),
         encode_record(did, nonc_key, [(X25519, xk)])),
        ('signing key non-canonical: x = 0 with sign bit set (y = 1)', encode_record(did, (1 | (1 << 255)).to_bytes(32, 'little'), [(X25519, xk)])),
        ('signing key not on the curve (y = %d has no x)' % off_y, encode_record(did, off_y.to_bytes(32, 'little'), [(X25519, xk)])),
        ('signing key not in the prime-order subgroup (valid key + point of order 8)',
         encode_record(did, ed.encode_point(ed.pt_add(A, T8)), [(X25519, xk)])),
        ('X25519 key all zero', encode_record(did, sk, [(X25519, bytes(32))])),
        ('X25519 key of 31 bytes', encode_record(did, sk, [(X25519, xk[:31])])),
        ('X25519 key of 33 bytes', encode_record(did, sk, [(X25519, xk + b'\x00')])),
        ('P-256 key off the curve (65 bytes, y + 1)', encode_record(did, sk, [(P256, b'\x04' + px.to_bytes(32, 'big') + ((py + 1) % P256_P).to_bytes(32, 'big'))])),
        ('P-256 key off the curve (33 bytes: x^3 - 3x + b not a square, x = %d)' % bx, encode_record(did, sk, [(P256, b'\x02' + bx.to_bytes(32, 'big'))])),
        ('P-256 key with prefix 0x05 (33 bytes)', encode_record(did, sk, [(P256, b'\x05' + pc[1:])])),
        ('P-256 key with prefix 0x05 (65 bytes)', encode_record(did, sk, [(P256, b'\x05' + pu[1:])])),
        ('P-256 hybrid form (prefix 0x06/0x07, 65 bytes)', encode_record(did, sk, [(P256, bytes([6 + (py & 1)]) + pu[1:])])),
        ('P-256 key: 33 bytes with prefix 0x04', encode_record(did, sk, [(P256, b'\x04' + pc[1:])])),
        ('P-256 key: 65 bytes with prefix 0x02', encode_record(did, sk, [(P256, b'\x02' + pu[1:])])),
        ('P-256 point at infinity (1 byte 0x00)', encode_record(did, sk, [(P256, b'\x00')])),
        ('P-256 compressed x >= p (x = p + %d, whose reduction is on the curve)' % cx,
         encode_record(did, sk, [(P256, b'\x02' + (cx + P256_P).to_bytes(32, 'big'))])),
        ('P-256 uncompressed x >= p (x = p + %d with a y of x = %d: the reduction is on the curve)' % (cx, cx),
         encode_record(did, sk, [(P256, b'\x04' + (cx + P256_P).to_bytes(32, 'big') + p256_sqrt(p256_rhs(cx)).to_bytes(32, 'big'))])),
    ]
    for what, b in inval:
        if b is None: continue
        r = parse_record(b)
        assert isinstance(r, str), what
        out.append({'hex': b.hex(), 'valid': False, 'why': what, 'reference_parser': r})
    return out

def build_messages():
    out = []
    signer = dev_id('A')
    for kind, target, prev in [('add', dev_record('B'), 1), ('rotate', dev_record('B', 1, enc=('x25519', 'p256c')), 2),
                               ('revoke', dev_id('B'), 3), ('reset', dev_record('R', enc=()), 4)]:
        m = change_message(ORIGIN, LABEL, signer, prev, kind, target)
        sig = ed_sign(dev_seed('A'), m); assert ed_verify(ed_public(dev_seed('A')), m, sig)
        out.append({'origin': ORIGIN.decode(), 'label_hex': LABEL.hex(), 'signer_hex': signer.hex(),
                    'previous_index': prev, 'kind': kind, 'target_hex': target.hex(), 'message_hex': m.hex(),
                    'signer_seed_hex': dev_seed('A').hex(), 'signer_public_key_hex': ed_public(dev_seed('A')).hex(),
                    'signature_hex': sig.hex()})
    o = b'x' * 255
    m = change_message(o, LABEL, signer, 2**64 - 1, 'revoke', dev_id('B'))
    out.append({'origin': o.decode(), 'label_hex': LABEL.hex(), 'signer_hex': signer.hex(), 'previous_index': 2**64 - 1,
                'kind': 'revoke', 'target_hex': dev_id('B').hex(), 'message_hex': m.hex(),
                'note': '255-byte origin, largest previous index'})
    return out

# ---------------------------------------------------------------- sealed changes: vectors
def sealed_checks(entry_bytes, sealed, newest_before, expected_digest):
    """Every check an opener makes of one sealed change, each independently of the others (so a vector
    can be shown to fail exactly one): codes of the checks that fail."""
    fails = []
    e = parse_change_entry(entry_bytes)
    assert e is not None
    p = parse_sealed(sealed)
    if isinstance(p, str): fails.append('sealed_change_malformed')
    if commitment(e['label'], e['version'], sealed) != e['commitment']: fails.append('commitment_mismatch')
    if not isinstance(p, str):
        if p['kind'] != e['kind']: fails.append('kind_mismatch')
        if p['previous_index'] != newest_before: fails.append('previous_index_mismatch')
        if p['set_digest'] != expected_digest: fails.append('set_digest_mismatch')
    return fails

def build_sealed():
    """Valid sealed changes of a short scripted life of LABEL (each with its commitment and entry), then
    sealed changes an opener must refuse, each failing exactly one check."""
    ctx = 'sealed'
    valid, states, st = [], {}, State()
    def auth_json(auth): return 'operator' if auth == 'operator' else {'signer_hex': auth[0].hex(), 'signature_hex': auth[1].hex()}
    def signed(st, name, kind, target, gen=0):
        return (dev_id(name), ed_sign(dev_seed(name, gen), change_message(ORIGIN, LABEL, dev_id(name), st.newest, kind, target)))
    script = [
        ('operator add of A, the label\'s first change (previous index none: 2^64 - 1)', 'add', dev_record('A'), None, 'first'),
        ('chained add of B by A', 'add', dev_record('B', enc=('x25519', 'p256c')), ('A', 0), 'chained'),
        ('chained rotate of B by B (new signing key, P-256 key uncompressed)', 'rotate', dev_record('B', 1, enc=('x25519', 'p256u')), ('B', 0), 'chained'),
        ('operator revoke of B (a 16-byte target)', 'revoke', dev_id('B'), None, 'operator_revoke'),
        ('operator reset to R (a record without encryption keys)', 'reset', dev_record('R', enc=()), None, 'account_reset'),
        ('operator add of R, an active id: invalid, so the set digest is that of the set before it', 'add', dev_record('R', 1), None, 'invalid'),
    ]
    for i, (what, kind, target, signer, want) in enumerate(script, 1):
        auth = 'operator' if signer is None else signed(st, signer[0], kind, target, signer[1])
        verdict = judge(st, ORIGIN, LABEL, kind, target, auth)[0]
        assert verdict == want, (what, verdict)
        after_private = apply_private(st, kind, target, verdict)
        sealed = encode_sealed(opening_for(ctx, i), kind, target, auth, st.newest, after_private.set_digest())
        commit = commitment(LABEL, st.version + 1, sealed)
        entry = encode_change_entry(T0 + 1000 * i, LABEL, st.version + 1, KINDS[kind], commit)
        outcome, after, _ = replay_change(st, ORIGIN, i, entry, sealed)
        assert outcome == verdict and after.set_digest() == after_private.set_digest()
        states[i] = (st, after)
        valid.append({'what': what, 'index': i, 'label_hex': LABEL.hex(), 'version': st.version + 1,
                      'opening_hex': opening_for(ctx, i).hex(), 'kind': kind, 'target_hex': target.hex(),
                      'authority': auth_json(auth), 'previous_index': st.newest,
                      'set_records_hex': [after.active[d].encode().hex() for d in sorted(after.active)],
                      'set_tombstoned_hex': [d.hex() for d in sorted(after.tombstoned)],
                      'set_digest_hex': after.set_digest().hex(), 'sealed_change_hex': sealed.hex(),
                      'commitment_message_hex': commitment_message(LABEL, st.version + 1, sealed).hex(),
                      'commitment_hex': commit.hex(), 'entry_hex': entry.hex(), 'verdict': verdict})
        st = after

    refused = []
    def refuse(at, why, code, sealed, entry=None, commit_version=None, commit_label=None):
        """A sealed change an opener refuses, at the position of valid vector `at` (the label's newest index
        before it and the set its rule leaves as there). Unless `entry` is given the entry is the valid
        vector's with the commitment over these bytes (commit_version/commit_label: over another version or
        label than the entry's), so only the check named fails."""
        before, after = states[at]
        v = valid[at - 1]
        if entry is None:
            c = commitment(commit_label or LABEL, commit_version or v['version'], sealed)
            entry = encode_change_entry(T0 + 1000 * at, LABEL, v['version'], KINDS[v['kind']], c)
        fails = sealed_checks(entry, sealed, before.newest, after.set_digest())
        assert fails == [code], (why, fails)
        outcome, _, detail = replay_change(before, ORIGIN, at, entry, sealed)
        alert = 'set_mismatch' if code == 'set_digest_mismatch' else 'bad_opening'
        assert outcome == alert and (detail == code or alert == 'set_mismatch'), (why, outcome, detail)
        p = parse_sealed(sealed)
        refused.append({'why': why, 'reason': code, 'alert': alert, 'at_index': at,
                        'newest_index_before': before.newest, 'expected_set_digest_hex': after.set_digest().hex(),
                        'entry_hex': entry.hex(), 'sealed_change_hex': sealed.hex(),
                        'reference_parser': p if isinstance(p, str) else None})
    S2 = bytes.fromhex(valid[1]['sealed_change_hex']); E2 = bytes.fromhex(valid[1]['entry_hex'])
    A2 = (bytes.fromhex(valid[1]['authority']['signer_hex']), bytes.fromhex(valid[1]['authority']['signature_hex']))
    T2 = bytes.fromhex(valid[1]['target_hex'])
    b2, a2 = states[2]
    def s2(**kw):   # vector 2's sealed change with fields replaced (raw)
        f = dict(opening=S2[:16], kind_byte=1, target=T2, authority_byte=CHAINED, tail=A2[0] + A2[1],
                 previous_field=1, digest=a2.set_digest(), target_length=None)
        f.update(kw)
        return encode_sealed_raw(**f)
    assert s2() == S2
    flipped = bytes([S2[0] ^ 0x01]) + S2[1:]
    refuse(2, 'the opening with its lowest bit flipped (the entry\'s commitment is over the true opening)', 'commitment_mismatch',
           flipped, entry=E2)
    refuse(2, 'the entry\'s commitment was computed over version 3; the entry says version 2', 'commitment_mismatch', S2, commit_version=3)
    refuse(2, 'the entry\'s commitment was computed over the label SHA-256("bob@example.com"); the entry is alice\'s',
           'commitment_mismatch', S2, commit_label=H('bob@example.com'))
    refuse(2, 'a zero byte after the set digest (the commitment is over these bytes)', 'sealed_change_malformed', S2 + b'\x00')
    refuse(2, 'cut short: the last byte of the set digest missing', 'sealed_change_malformed', S2[:-1])
    refuse(2, 'cut short: only the opening', 'sealed_change_malformed', S2[:16])
    refuse(2, 'kind byte 5 (not 1 to 4)', 'sealed_change_malformed', s2(kind_byte=5))
    refuse(2, 'kind byte 0', 'sealed_change_malformed', s2(kind_byte=0))
    refuse(2, 'authority byte 2 (not 0 or 1), followed by a signer and a signature', 'sealed_change_malformed', s2(authority_byte=2))
    refuse(2, 'authority byte 2 with nothing after it but the previous index and the set digest', 'sealed_change_malformed',
           s2(authority_byte=2, tail=b''))
    refuse(2, 'authority 0x01 (chained) without a signer and a signature', 'sealed_change_malformed', s2(tail=b''))
    refuse(2, 'authority 0x00 (operator) followed by a signer and a signature', 'sealed_change_malformed', s2(authority_byte=OPERATOR))
    refuse(2, 'target length one more than the record (its first byte taken from the authority)', 'sealed_change_malformed',
           s2(target_length=len(T2) + 1))
    refuse(2, 'target length 65535, beyond the end', 'sealed_change_malformed', s2(target_length=65535))
    refuse(2, 'target of length 0 for an add', 'sealed_change_malformed', s2(target=b''))
    refuse(2, 'target a record whose X25519 key is all zero (against the rules of records)', 'sealed_change_malformed',
           s2(target=encode_record(dev_id('B'), ed_public(dev_seed('B')), [(X25519, bytes(32))])))
    refuse(2, 'target a record with a trailing byte', 'sealed_change_malformed', s2(target=T2 + b'\x00'))
    S4 = bytes.fromhex(valid[3]['sealed_change_hex'])
    b4, a4 = states[4]
    def s4(**kw):
        f = dict(opening=S4[:16], kind_byte=3, target=dev_id('B'), authority_byte=OPERATOR, tail=b'',
                 previous_field=3, digest=a4.set_digest(), target_length=None)
        f.update(kw)
        return encode_sealed_raw(**f)
    assert s4() == S4
    refuse(4, 'revoke target of 15 bytes', 'sealed_change_malformed', s4(target=dev_id('B')[:15]))
    refuse(4, 'revoke target of 17 bytes', 'sealed_change_malformed', s4(target=dev_id('B') + b'\x00'))
    refuse(2, 'kind rotate (0x02) in the sealed change, add (0x01) in the entry; the target (a record) parses for both',
           'kind_mismatch', s2(kind_byte=2))
    refuse(4, 'kind reset (0x04) with a record in the sealed change, revoke (0x03) in the entry', 'kind_mismatch',
           s4(kind_byte=4, target=dev_record('R', enc=())))
    refuse(2, 'previous index 2^64 - 1 (none) for the label\'s second change (its newest index is 1)', 'previous_index_mismatch',
           s2(previous_field=NO_INDEX))
    refuse(2, 'previous index 2, the change\'s own index (the newest index is 1)', 'previous_index_mismatch', s2(previous_field=2))
    S1 = bytes.fromhex(valid[0]['sealed_change_hex'])
    b1, a1 = states[1]
    refuse(1, 'previous index 0 for the label\'s first change (none is 2^64 - 1)', 'previous_index_mismatch',
           S1[:-40] + u64(0) + S1[-32:])
    ghost = parse_record(dev_record('G'))
    with_ghost = a2.copy(); with_ghost.active[ghost.device_id] = ghost
    refuse(2, 'set digest of A, B and a ghost G the change does not add (a ghost only in the committed set)',
           'set_digest_mismatch', s2(digest=with_ghost.set_digest()))
    refuse(2, 'set digest of the set before the change (A alone)', 'set_digest_mismatch', s2(digest=b2.set_digest()))
    not_tombstoned = a4.copy(); not_tombstoned.tombstoned = set()
    refuse(4, 'revoke committing to the set without the revoked id\'s tombstone', 'set_digest_mismatch',
           s4(digest=not_tombstoned.set_digest()))
    no_tomb = b2.copy(); no_tomb.active = {}
    refuse(2, 'set digest of the empty set', 'set_digest_mismatch', s2(digest=no_tomb.set_digest()))
    return {'commitment_key_hex': COMMITMENT_KEY.hex(), 'valid': valid, 'refused': refused}

def main():
    self_test()
    coverage, extras = set(), set()
    seqs = build_sequences(coverage, extras)
    need = {(row, a) for row, (ov, cv) in TABLE.items() for a in ('operator', 'chained')}
    missing = need - coverage
    assert not missing, missing
    need_extras = {'stale previous index', 'other origin', 'claimed by another active device', 'revoked signer',
                   'unknown signer', 'bad signature', 'S >= L', 'malformed target', 'signer tombstoned by reset',
                   'chained to never-changed', 'signer stale key', 'R identity', 'R non-canonical identity', 'R order 8',
                   'R mixed order', 'both: operator rotate', 'both: chained rotate', 'both: add', 'both: signer',
                   'both: chained revoke', 'both: operator revoke', 'both: reset', 'invalid moves the public part',
                   'previous index names an invalid entry', 'version skipped', 'version repeated',
                   'add after invalid changes only'}
    assert need_extras <= extras, need_extras - extras
    sealed = build_sealed()
    # the verdicts in the file are the rule's: replay every sequence from its bytes, as an opener does
    # (parse the entry and the sealed change, open the commitment, judge, apply, compare the set digest)
    for sq in seqs:
        st = State()
        for stp in sq['steps']:
            if stp['entry_hex'] is None:
                assert stp['verdict'] == 'malformed' and isinstance(parse_target(stp['kind'], bytes.fromhex(stp['target_hex'])), str)
                v = 'malformed'
            else:
                v, st, detail = replay_change(st, ORIGIN, stp['index'], bytes.fromhex(stp['entry_hex']), bytes.fromhex(stp['sealed_change_hex']))
                assert detail is None or (detail == 'version' and stp['decided_by'] == 'version'), (sq['name'], stp['index'], v, detail)
                assert stp['leaf_hash_hex'] == entry_leaf_hash(bytes.fromhex(stp['entry_hex'])).hex()
                assert stp['commitment_hex'] == parse_change_entry(bytes.fromhex(stp['entry_hex']))['commitment'].hex()
                assert bytes.fromhex(stp['sealed_change_hex'])[:16] == opening_for(sq['name'], stp['index'])
            mv = st.map_value()
            assert v == stp['verdict'] and (mv.hex() if mv else None) == stp['map_value_hex'] and st.version == stp['version'], \
                (sq['name'], stp['index'], v, stp['verdict'])
            assert st.set_digest().hex() == stp['set_digest_hex'] and st.chain.hex() == stp['chain_hex']
    out = {
        'source': 'Generated by an independent Python 3 (standard library only) implementation written from '
                  'Spec/directory.md alone (step B: sealed changes, commitments, the public map value, the set digest), '
                  'without reading the Swift code (Spec/reference/device_reference.py; Ed25519 group arithmetic from '
                  'Spec/reference/keyglass_v2_reference.py).',
        'origin': ORIGIN.decode(), 'label_hex': LABEL.hex(),
        'label_is': 'SHA-256("alice@example.com")',
        'conventions': {
            'index': 'each sequence starts at log index 1 and every step (invalid and malformed ones too) takes the next '
                     'index; a malformed step writes no entry of the label (its index is another entry of the log)',
            'timestamps': 'the change entry at log index i is stamped 1767225600000 + 1000 * i (ms)',
            'openings': 'deterministic, for the vectors only (a log draws each at random): the first 16 bytes of SHA-256 of '
                        'the ASCII string "opening <context> <i>", with <context> the sequence name and <i> the step\'s '
                        'log index (decimal) in sequences, and "sealed" and the vector\'s index in sealed.valid '
                        '(e.g. SHA-256("opening owner-chained 1")[:16])',
            'leaf_hash': 'leaf_hash_hex is the RFC 9162 leaf hash SHA-256(0x00 || entry) of the step\'s entry_hex (the h of '
                         'the chain); null for a malformed step (no entry)',
            'entry': 'entry_hex: the public change entry 0x02 || 0x02 || timestamp (8) || label (32) || version (8) || kind (1) '
                     '|| commitment (32), 83 bytes; its version is the label\'s version + 1 unless the step says otherwise '
                     '(entry_version)',
            'sealed_change': 'sealed_change_hex: opening (16) || kind (1) || target length (2) || target || authority (1: 0x00 '
                             'operator, 0x01 chained) || [signer id (16) || signature (64) if chained] || previous index (8: '
                             'the label\'s newest index before the change, 2^64 - 1 if none) || set digest (32) of the '
                             'devices and tombstones after the change (an invalid change: the set as it was)',
            'commitment': 'commitment_hex = HMAC-SHA256(K, opening || label (32) || version (8) || the sealed change after its '
                          'opening), K = SHA-256("keyglass-commitment-key-v1") (sealed.commitment_key_hex); the entry\'s '
                          'last 32 bytes',
            'set_digest': 'set_digest_hex: SHA-256(0x06 || active count (4) || each active record as length (2) || record, '
                          'ascending by id || tombstone count (4) || each tombstoned id, ascending) of the label\'s devices '
                          'and tombstones after the step; given for every step (a never-changed label: the empty set\'s)',
            'map_value': 'map_value_hex: SHA-256(0x05 || version (8) || newest index (8) || chain (32)), the public part only; '
                         'null while the label is at version 0 (absent from the map)',
            'public_part': 'every change entry at the label\'s version + 1 moves version, newest index and chain, an '
                           'invalid change too (its devices and tombstones stay as they were); an entry at another version '
                           '(decided_by "version", verdict "invalid") is not applied at all: nothing moves',
            'previous_index_without_entry': 'a chained change to a never-changed label is signed with previous index 0 in '
                                            'the change message (it is invalid anyway); its sealed change says 2^64 - 1',
            'never_changed': 'the table row "add, new id, to a set never changed" is read as: the label is at version 0 '
                             '(no change entry of it applied, invalid ones included: Spec/decisions.md 30, "first" means '
                             '"no change entry yet"; sequence invalid-first-changes)',
            'malformed': 'verdict "malformed": the target does not parse (a record against its rules, a revoke id of other '
                         'than 16 bytes), so it is not a change: no sealed change can hold it (the sealed change\'s parser '
                         'refuses such a target) and no change entry is written; nothing of the label moves (version, '
                         'newest index, map value, set digest); entry_hex, sealed_change_hex, commitment_hex, '
                         'leaf_hash_hex, entry_version and previous_index are null',
            'signatures': 'checked as libsodium 1.0.18 crypto_sign_verify_detached: S < L, R and the key not of small order '
                          '(y, sign bit ignored, in {0, 1, y8, p - y8, p - 1, p, p + 1}), the key canonical, then the '
                          'canonical encoding of [S]B - [h]A must equal R',
            'check_order': '1: signer active and signature valid (chained only); 2: the bounds (no step here reaches them); '
                           '3: the table',
            'both_active_and_tombstoned': 'an applied add/rotate/reset naming a tombstoned id makes the record active while '
                                          'the id stays tombstoned; revoke judges such an id as active, every other change '
                                          'as tombstoned (sequences active-and-tombstoned and literal-readings)',
            'replay': 'every step verifies as an opener replays it: the entry parses, the sealed change parses, opens the '
                      'commitment, names the entry\'s kind and the label\'s newest index; the rule\'s verdict; the set '
                      'digest is that of the set the rule leaves',
            'fields': 'top level: origin (the log origin of every change message and signature), label_hex and label_is '
                      '(the one label every sequence changes), records, messages, sequences, sealed. records: hex, valid, '
                      'then what, device_id_hex, signing_key_hex, encryption_keys [{type (1 X25519, 2 P-256), key_hex}] for '
                      'a valid one, or why and reference_parser (this parser\'s reason) for an invalid one. messages: '
                      'origin, label_hex, signer_hex, previous_index, kind, target_hex, message_hex (the chained-change '
                      'message), and signer_seed_hex, signer_public_key_hex, signature_hex (or a note). sequences: name, '
                      'description, steps; a step: index (log index), leaf_hash_hex, kind, target_hex, authority ("operator" '
                      'or {signer_hex, signature_hex}), verdict (first, chained, ghost_device, injected_key, '
                      'operator_revoke, account_reset, invalid, malformed), map_value_hex, version (the label\'s version '
                      'after the step), set_digest_hex, entry_hex, sealed_change_hex, commitment_hex, then the informative '
                      'fields',
            'extra_step_fields': 'note, table_row, decided_by ("version" for an entry at a wrong version), invalid_because, '
                                 'entry_version (the entry\'s version), previous_index (the sealed change\'s, null for none), '
                                 'newest_index, chain_hex, active_ids_hex, tombstoned_ids_hex are informative',
            'sealed': 'sealed.valid: sealed changes of one scripted life of the label (index = log index, version, opening, '
                      'kind, target, authority, previous_index (null: none, encoded 2^64 - 1), set_records_hex and '
                      'set_tombstoned_hex (the set after it) and set_digest_hex, sealed_change_hex, commitment_message_hex '
                      '(the HMAC\'s message), commitment_hex, entry_hex, verdict). sealed.refused: sealed changes an '
                      'opener must refuse, each failing exactly one check, given entry_hex, sealed_change_hex, '
                      'newest_index_before (the label\'s newest index before the change; null: none) and '
                      'expected_set_digest_hex (of the set the rule leaves; for a lookup, of the set shown); reason: '
                      'sealed_change_malformed (the parser refuses it; reference_parser says why), commitment_mismatch, '
                      'kind_mismatch, previous_index_mismatch or set_digest_mismatch; alert: bad_opening for the first four, '
                      'set_mismatch for the last; at_index: the valid vector whose position it takes',
        },
        'records': build_records(),
        'messages': build_messages(),
        'sequences': seqs,
        'sealed': sealed,
    }
    if '--repo' in sys.argv[1:]:
        target = os.path.normpath(os.path.join(HERE, '..', 'vectors', 'device-vectors.json'))
    else:
        target = os.path.join(HERE, 'device-vectors.json')
    text = json.dumps(out, indent=1) + '\n'
    if '--check' in sys.argv[1:]:
        try:
            with open(target) as f: committed = f.read()
        except OSError as e:
            print('%s: cannot read (%s)' % (target, e), file=sys.stderr); sys.exit(1)
        if committed != text:
            print('%s differs from what the reference implementation produces' % target, file=sys.stderr); sys.exit(1)
        print('%s matches the reference implementation' % target); return
    with open(target, 'w') as f: f.write(text)
    print('wrote ' + target)
    nv = sum(r['valid'] for r in out['records'])
    print('records: %d valid, %d invalid; messages %d; sequences %d, steps %d; cells covered %d/%d; sealed %d valid, %d refused' % (
        nv, len(out['records']) - nv, len(out['messages']), len(seqs), sum(len(s['steps']) for s in seqs), len(coverage & need), len(need),
        len(sealed['valid']), len(sealed['refused'])))
    from collections import Counter
    print(sorted(Counter(st['verdict'] for s in seqs for st in s['steps']).items()))

if __name__ == '__main__':
    main()
