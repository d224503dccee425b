#!/usr/bin/env python3
"""Independent reference implementation (Python 3 stdlib only) of a key-directory v2 log and its
lookups, written from Spec/directory.md ("The state of a label", "Sealed changes", "Entries of a v2 log",
"Replaying a log", "Lookups") and Spec/map.md alone, without reading the Swift. It reuses
keyglass_v2_reference.py (Ed25519 arithmetic, ECVRF, the map) and device_reference.py (records, the
change message, the rule, a label's state, its map value and set digest, sealed changes, commitments,
change entries, RFC 8032 signing), both imported from this script's own directory. Checkpoints are
C2SP tlog-checkpoint texts in C2SP signed notes (Ed25519, key name = the origin); the log's Merkle tree
and inclusion proofs are RFC 9162 section 2.1.

It builds a small v2 log of step B (alice, bob, carol; three map heads; every change entry sealed with
a deterministic opening), replays it as an anonymous auditor (public parts and map heads only) and as
the server (every change opened and judged), signs a checkpoint after each head, answers lookups for
four identities at each checkpoint (the state carrying the newest change's entry and sealed change),
crafts answers a client must refuse (among them from a fork and from a log whose sealed changes
commit to what the rule does not leave), and checks all of them with its own verifier of the Lookups
section (steps 1-7) before writing Spec/vectors/lookup-vectors.json.

Run: python3 lookup_reference.py [--check]   (--check: compare with the file; exit 1 on difference)"""
import base64, hashlib, importlib.util, json, os, sys, unicodedata

sys.dont_write_bytecode = True  # never write a __pycache__ into Spec/reference
HERE = os.path.dirname(os.path.abspath(__file__))
TARGET = os.path.normpath(os.path.join(HERE, '..', 'vectors', 'lookup-vectors.json'))

def _load(name):
    path = os.path.join(HERE, name + '.py')
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod

kg = _load('keyglass_v2_reference')   # Ed25519 group, ECVRF, map
dr = _load('device_reference')        # records, change message, rule, state, map value, ed_sign

def sha256(b): return hashlib.sha256(b).digest()
def H(s): return sha256(s.encode())
def u8(n): return n.to_bytes(1, 'big')
def u16(n): return n.to_bytes(2, 'big')
def u64(n): return n.to_bytes(8, 'big')
def b64(b): return base64.b64encode(b).decode()

# ---------------------------------------------------------------- fixed material
PFX = 'keyglass-lookup-ref'
ORIGIN = b'example.com/directory'
OTHER_ORIGIN = b'example.net/directory'
SUITE = 0x03
VRF_SEED = H(PFX + ' vrf seed')
OTHER_VRF_SEED = H(PFX + ' other vrf seed')
LOG_SEED = H(PFX + ' log signing seed')
OTHER_LOG_SEED = H(PFX + ' other log signing seed')
T0 = 1767225600000  # 2026-01-01T00:00:00Z in ms; entry i is stamped T0 + 1000 * i
IDENTITIES = ['alice@example.com', 'bob@example.com', 'carol@example.com', 'dave@example.com']
KIND_BYTE = {'add': 1, 'rotate': 2, 'revoke': 3, 'reset': 4}

def dev_id(name): return H(PFX + ' device id ' + name)[:16]
def dev_seed(name): return H(PFX + ' device seed ' + name)

def dev_record(name, enc):
    keys = []
    for e in enc:
        if e == 'x25519': keys.append((dr.X25519, dr.x25519_public(H(PFX + ' x25519 ' + name))))
        else:
            x, y = dr.p256_point(PFX + ' p256 ' + name)
            keys.append((dr.P256, dr.p256_compressed(x, y) if e == 'p256c' else dr.p256_uncompressed(x, y)))
    rec = dr.encode_record(dev_id(name), dr.ed_public(dev_seed(name)), keys)
    assert isinstance(dr.parse_record(rec), dr.Record)
    return rec

ENC = {'A': ('x25519',), 'B': ('x25519', 'p256c'), 'E': ('p256u',), 'C': (), 'F': ('x25519',), 'G': ('x25519',)}
def rec(name): return dev_record(name, ENC[name])

def normalize(identity): return unicodedata.normalize('NFC', identity).encode('utf-8')

_prove_cache = {}
def vrf_prove(seed, identity):
    k = (seed, identity)
    if k not in _prove_cache: _prove_cache[k] = kg.prove(seed, normalize(identity))
    return _prove_cache[k]

def vrf_label(seed, identity): return kg.proof_to_hash(vrf_prove(seed, identity))[:32]

# ---------------------------------------------------------------- RFC 9162 Merkle tree
def leaf_hash(entry): return sha256(b'\x00' + entry)
def node_hash(l, r): return sha256(b'\x01' + l + r)

def _split(n):
    k = 1
    while k * 2 < n: k *= 2
    return k

def mth(hashes):
    n = len(hashes)
    if n == 0: return sha256(b'')
    if n == 1: return hashes[0]
    k = _split(n)
    return node_hash(mth(hashes[:k]), mth(hashes[k:]))

def inclusion_path(m, hashes):
    """RFC 9162 2.1.3.1 PATH(m, D[n]), on leaf hashes."""
    n = len(hashes)
    assert 0 <= m < n
    if n == 1: return []
    k = _split(n)
    if m < k: return inclusion_path(m, hashes[:k]) + [mth(hashes[k:])]
    return inclusion_path(m - k, hashes[k:]) + [mth(hashes[:k])]

def verify_inclusion(index, size, lh, proof, root):
    """RFC 9162 2.1.3.2."""
    if index >= size or any(len(p) != 32 for p in proof): return False
    fn, sn, r = index, size - 1, lh
    for p in proof:
        if sn == 0: return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0: fn >>= 1; sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1; sn >>= 1
    return sn == 0 and r == root

# ---------------------------------------------------------------- C2SP signed notes and checkpoints
def key_id(name, pk): return sha256(name.encode() + b'\x0a' + b'\x01' + pk)[:4]

def verifier_key(name, pk): return '%s+%s+%s' % (name, key_id(name, pk).hex(), b64(b'\x01' + pk))

def checkpoint_text(origin, size, root): return '%s\n%d\n%s\n' % (origin, size, b64(root))

def sign_note(text, name, seed):
    sig = dr.ed_sign(seed, text.encode())
    return text + '\n' + '\u2014 %s %s\n' % (name, b64(key_id(name, dr.ed_public(seed)) + sig))

def _b64_strict(s):
    try: b = base64.b64decode(s, validate=True)
    except Exception: return None
    return b if b64(b) == s else None

def parse_verifier_key(vkey):
    parts = vkey.split('+', 2)   # the name has no '+'; base64 may
    assert len(parts) == 3, vkey
    name, hid, k = parts
    kb = _b64_strict(k)
    assert kb is not None and len(kb) == 33 and kb[0] == 1 and key_id(name, kb[1:]).hex() == hid
    return name, bytes.fromhex(hid), kb[1:]

# ---------------------------------------------------------------- v2 entries (Spec/directory.md)
def enc_config(origin, vrf_pk, suite=SUITE):
    return b'\x02\x01' + u8(len(origin)) + origin + u8(suite) + vrf_pk

def enc_change(ts, label, version, kind, commitment):
    """A v2 change entry (step B): 0x02 || 0x02 || timestamp (8) || label (32) || version (8) || kind (1) ||
    commitment (32), 83 bytes."""
    return dr.encode_change_entry(ts, label, version, KIND_BYTE[kind], commitment)

def enc_head(ts, epoch, covered, root):
    return b'\x02\x03' + u64(ts) + u64(epoch) + u64(covered) + root

def parse_entry(b):
    """A dict for a canonical v2 entry, else None."""
    if len(b) < 2 or b[0] != 2: return None
    t, body = b[1], b[2:]
    if t == 1:
        if len(body) < 1: return None
        n = body[0]
        if n < 1 or len(body) != 1 + n + 1 + 32: return None
        return {'type': 'config', 'origin': body[1:1 + n], 'suite': body[1 + n], 'vrf_pk': body[2 + n:]}
    if t == 2:
        c = dr.parse_change_entry(b)
        return None if c is None else dict(c, type='change')
    if t == 3:
        if len(body) != 8 + 8 + 8 + 32: return None
        return {'type': 'head', 'timestamp': int.from_bytes(body[:8], 'big'), 'epoch': int.from_bytes(body[8:16], 'big'),
                'covered': int.from_bytes(body[16:24], 'big'), 'root': body[24:]}
    return None

# ---------------------------------------------------------------- building a log
class Log:
    """A v2 log built change by change; each change is judged by device_reference's rule before it is
    appended (the honest server's side), sealed (opening: opening_for(name, index)) and written as a
    change entry; each head snapshots every label's state and history. `forge` writes what an honest
    server never does: a sealed change committing to another set digest, previous index or kind."""
    def __init__(self, name, vrf_seed, origin=ORIGIN, log_seed=LOG_SEED):
        self.name, self.origin, self.vrf_seed, self.log_seed = name, origin, vrf_seed, log_seed
        self.entries, self.what = [enc_config(origin, kg.public_key(vrf_seed))], ['config']
        self.sealed = {}                                        # log index -> sealed change
        self.states, self.histories, self.heads = {}, {}, {}   # label -> State / [(i, h)]; head index -> snapshot

    def label(self, identity): return vrf_label(self.vrf_seed, identity)

    def change(self, identity, kind, dev, signer=None, expect=None, forge=None):
        L = self.label(identity); st = self.states.get(L, dr.State()); i = len(self.entries)
        target = dev_id(dev) if kind == 'revoke' else rec(dev)
        if signer is None: auth = 'operator'
        else:
            msg = dr.change_message(self.origin, L, dev_id(signer), st.newest, kind, target)
            auth = (dev_id(signer), dr.ed_sign(dev_seed(signer), msg))
        verdict = dr.judge(st, self.origin, L, kind, target, auth)[0]
        assert verdict == expect, (identity, kind, dev, verdict)
        forge = forge or {}
        digest = forge.get('set_digest', dr.apply_private(st, kind, target, verdict).set_digest())
        sealed = dr.encode_sealed(dr.opening_for(self.name, i), forge.get('kind', kind), target, auth,
                                  forge.get('previous_index', st.newest), digest)
        e = enc_change(T0 + 1000 * i, L, st.version + 1, kind, dr.commitment(L, st.version + 1, sealed))
        h = leaf_hash(e)
        self.states[L] = dr.apply(st, i, h, kind, target, verdict)
        self.histories[L] = self.histories.get(L, []) + [(i, h)]
        self.entries.append(e); self.sealed[i] = sealed
        self.what.append('%s: %s %s %s (%s, version %d)%s' % (identity, 'operator' if signer is None else 'chained by ' + signer,
                                                             kind, dev, verdict, st.version + 1,
                                                             '; forged sealed change: ' + forge['what'] if forge else ''))

    def head(self):
        i = len(self.entries); epoch = len(self.heads) + 1
        pairs = [(L, s.map_value()) for L, s in self.states.items() if s.map_value() is not None]
        root = kg.map_root(pairs)
        self.entries.append(enc_head(T0 + 1000 * i, epoch, i, root))
        self.what.append('map head: epoch %d, covered size %d' % (epoch, i))
        self.heads[i] = {'epoch': epoch, 'covered': i, 'root': root, 'pairs': pairs,
                         'states': dict(self.states), 'histories': {L: list(h) for L, h in self.histories.items()}}

    def hashes(self, size=None): return [leaf_hash(e) for e in self.entries[:size]]

    def checkpoint(self, size, seed=None, entries=None):
        hs = [leaf_hash(e) for e in (entries or self.entries)[:size]]
        name = self.origin.decode()
        return sign_note(checkpoint_text(name, size, mth(hs)), name, seed or self.log_seed)

def build_main():
    g = Log('main', VRF_SEED)
    g.change('alice@example.com', 'add', 'A', expect='first')
    g.change('alice@example.com', 'add', 'B', signer='A', expect='chained')
    g.head()
    g.change('bob@example.com', 'add', 'E', expect='first')
    g.change('carol@example.com', 'add', 'C', expect='first')
    g.change('carol@example.com', 'revoke', 'C', signer='C', expect='chained')
    g.head()
    g.change('alice@example.com', 'revoke', 'B', signer='A', expect='chained')
    g.head()
    return g

def build_fork():
    """A fork signed by the same key, same origin and VRF key: alice absent at the first head, then
    alice with a ghost where the real log has B; carol with two tombstones."""
    g = Log('fork', VRF_SEED)
    g.change('bob@example.com', 'add', 'E', expect='first')
    g.head()
    g.change('alice@example.com', 'add', 'A', expect='first')
    g.change('alice@example.com', 'add', 'G', expect='ghost_device')
    g.change('carol@example.com', 'add', 'C', expect='first')
    g.change('carol@example.com', 'add', 'F', signer='C', expect='chained')
    g.change('carol@example.com', 'revoke', 'C', signer='C', expect='chained')
    g.change('carol@example.com', 'revoke', 'F', signer='F', expect='chained')
    g.head()
    return g

def build_other_vrf():
    g = Log('other-vrf', OTHER_VRF_SEED)
    g.change('alice@example.com', 'add', 'A', expect='first')
    g.head()
    return g

def build_forged():
    """A log signed by the log key whose server seals what the rule does not leave: alice's second change
    (A adds B) commits to the set A, B and a ghost G; bob's second change (E adds F) names previous
    index none; carol's first change (an add of C) is sealed as a rotate. Every entry and head is what
    the public part makes: only those who open the changes can tell."""
    g = Log('forged', VRF_SEED)
    g.change('alice@example.com', 'add', 'A', expect='first')
    st = g.states[g.label('alice@example.com')]
    ghost = dr.apply_private(st, 'add', rec('B'), 'chained'); ghost = dr.apply_private(ghost, 'add', rec('G'), 'chained')
    g.change('alice@example.com', 'add', 'B', signer='A', expect='chained',
             forge={'set_digest': ghost.set_digest(), 'what': 'commits to the set A, B, G (a ghost only in the committed set)'})
    g.change('bob@example.com', 'add', 'E', expect='first')
    g.change('bob@example.com', 'add', 'F', signer='E', expect='chained',
             forge={'previous_index': None, 'what': 'previous index 2^64 - 1 (none) instead of 3'})
    g.change('carol@example.com', 'add', 'C', expect='first', forge={'kind': 'rotate', 'what': 'kind rotate; the entry says add'})
    g.head()
    return g

# ---------------------------------------------------------------- replay (Spec/directory.md "Replaying a log")
def replay(entries, sealed=None):
    """Replays a v2 log. Without sealed changes (an anonymous auditor): every label's public part, and
    whether every head is in sequence and has the right root; outcome 'sealed' for every change entry
    applied, 'invalid' for one at a wrong version. With them (sealed: log index -> sealed change, as the
    server holds): each change is also opened and judged (device_reference.replay_change): the rule's
    verdict, bad_opening or set_mismatch. A head's covered size may equal its own index ("Entries of a
    v2 log": a head covers no entry at or after its own index; "Lookups" step 3: covering fewer than N
    entries), though "Replaying a log" reads as refusing a covered size at its own index."""
    cfg = parse_entry(entries[0]); assert cfg and cfg['type'] == 'config'
    origin = cfg['origin']
    states, values_at = {}, []          # values_at: (index, label, value) after each applied change
    verdicts, heads, prev = {}, {}, None
    for i, e in enumerate(entries[1:], 1):
        p = parse_entry(e); assert p is not None and p['type'] != 'config', i
        if p['type'] == 'change':
            st = states.get(p['label'], dr.State())
            if sealed is None:
                if p['version'] != st.version + 1: v = 'invalid'
                else: v, states[p['label']] = 'sealed', dr.advance_public(st, i, leaf_hash(e))
            else:
                v, states[p['label']], _ = dr.replay_change(st, origin, i, e, sealed[i])
            if states.get(p['label'], st) is not st: values_at.append((i, p['label'], states[p['label']].map_value()))
            verdicts[i] = v
        else:
            ok = (p['epoch'] == (prev['epoch'] + 1 if prev else 1)
                  and p['covered'] >= (max(prev['covered'], prev['index']) if prev else 0)
                  and p['covered'] <= i and (prev is None or p['timestamp'] >= prev['timestamp']))
            if ok:
                m = {}
                for j, L, val in values_at:
                    if j < p['covered']: m[L] = val
                ok = kg.map_root(list(m.items())) == p['root']
            heads[i] = ok
            prev = dict(p, index=i)
    return verdicts, heads

# ---------------------------------------------------------------- answers
def proof_json(pairs, label):
    t, v, ol, sibs = kg.make_proof(pairs, label)
    out = {'terminal': t}
    if v is not None: out['value_hex'] = v.hex()
    if ol is not None: out['other_label_hex'] = ol.hex()
    out['siblings_hex'] = [s.hex() for s in sibs]
    return out

def state_json(st, hist, entries, sealed):
    newest = hist[-1][0]
    return {'devices_hex': [st.active[i].encode().hex() for i in sorted(st.active)],
            'tombstoned_hex': [t.hex() for t in sorted(st.tombstoned)],
            'history': [{'index': i, 'leaf_hash_hex': h.hex()} for i, h in hist],
            'newest_entry_hex': entries[newest].hex(),
            'newest_sealed_change_hex': sealed[newest].hex()}

def answer(log, size, identity, seed=None, entries=None, head_at=None):
    """A full, self-contained answer (the bad lookups' form). head_at: the leaf given as the head
    (default N - 1), proved at its own index."""
    entries = entries or log.entries
    hs = [leaf_hash(e) for e in entries[:size]]
    hi = size - 1 if head_at is None else head_at
    snap = log.heads.get(hi)
    L = log.label(identity)
    if snap is None:  # leaf hi is not a head: take the newest head before it for the rest of the answer
        snap = log.heads[max(j for j in log.heads if j < hi)]
    st = snap['states'].get(L)
    a = {'identity': identity, 'checkpoint_size': size,
         'checkpoint_note': log.checkpoint(size, seed=seed, entries=entries),
         'config_entry_hex': entries[0].hex(),
         'config_proof_hex': [p.hex() for p in inclusion_path(0, hs)],
         'head_entry_hex': entries[hi].hex(),
         'head_proof_hex': [p.hex() for p in inclusion_path(hi, hs)],
         'vrf_proof_hex': vrf_prove(log.vrf_seed, identity).hex(),
         'map_proof': proof_json(snap['pairs'], L),
         'state': state_json(st, snap['histories'][L], entries, log.sealed) if st is not None and st.version > 0 else None}
    return a

GOOD_FIELDS = ['identity', 'checkpoint_size', 'config_proof_hex', 'head_proof_hex', 'vrf_proof_hex', 'map_proof', 'state']

# ---------------------------------------------------------------- the verifier (Spec/directory.md "Lookups")
class Refused(Exception):
    def __init__(self, step, reason, detail=''):
        Exception.__init__(self, 'step %d: %s %s' % (step, reason, detail))
        self.step, self.reason = step, reason

def open_checkpoint(note, vkey, skip=()):
    """Step 1: the note must carry a valid signature by the log's key; then the checkpoint text."""
    name, kid, pk = parse_verifier_key(vkey)
    if not note.endswith('\n') or '\n\n' not in note: raise Refused(1, 'checkpoint_format', 'not a signed note')
    cut = note.rindex('\n\n')
    text, sigs = note[:cut + 1], note[cut + 2:]
    ok = False
    for line in sigs[:-1].split('\n'):
        if not line.startswith('\u2014 '): raise Refused(1, 'checkpoint_format', 'bad signature line')
        f = line[2:].split(' ')
        if len(f) != 2: raise Refused(1, 'checkpoint_format', 'bad signature line')
        blob = _b64_strict(f[1])
        if blob is None or len(blob) < 5: raise Refused(1, 'checkpoint_format', 'bad signature blob')
        if f[0] == name and blob[:4] == kid:
            if (len(blob) != 68 or not dr.ed_verify(pk, text.encode(), blob[4:])) and 'checkpoint_signature' not in skip:
                raise Refused(1, 'checkpoint_signature', 'the log key\'s signature does not verify')
            ok = True
    if not ok and 'checkpoint_signature' not in skip: raise Refused(1, 'checkpoint_signature', 'no signature by the log\'s key')
    lines = text.split('\n')
    if len(lines) < 4 or lines[-1] != '': raise Refused(1, 'checkpoint_format', 'fewer than 3 lines')
    origin, size_s, root_s = lines[0], lines[1], lines[2]
    if origin != name: raise Refused(1, 'checkpoint_origin', 'checkpoint origin is not the key name')
    if not size_s.isdigit() or not size_s.isascii() or (size_s != '0' and size_s[0] == '0'):
        raise Refused(1, 'checkpoint_format', 'size')
    root = _b64_strict(root_s)
    if root is None or len(root) != 32: raise Refused(1, 'checkpoint_format', 'root')
    return origin.encode(), int(size_s), root

def verify_lookup(vkey, a, pinned_vrf_pk=None, client=None, skip=()):
    """a: an answer in the JSON form (hex). client: {'newest_epoch': e, 'seen': {'version', 'chain_hex'}}.
    Returns the result, or raises Refused(step, reason). skip (self tests only): checks to leave out, to
    show that a bad answer is refused by exactly the check named and would pass without it."""
    client = client or {}
    ident = normalize(a['identity'])
    # 1
    origin, N, root = open_checkpoint(a['checkpoint_note'], vkey, skip)
    # 2
    cfg_b = bytes.fromhex(a['config_entry_hex'])
    if not verify_inclusion(0, N, leaf_hash(cfg_b), [bytes.fromhex(p) for p in a['config_proof_hex']], root):
        raise Refused(2, 'config_inclusion')
    cfg = parse_entry(cfg_b)
    if cfg is None or cfg['type'] != 'config' or cfg['suite'] != SUITE: raise Refused(2, 'config_not_config')
    if cfg['origin'] != origin and 'config_origin' not in skip: raise Refused(2, 'config_origin', 'leaf 0 names another origin')
    if pinned_vrf_pk is not None and cfg['vrf_pk'] != pinned_vrf_pk: raise Refused(2, 'config_vrf_key', 'not the pinned VRF key')
    # 3
    head_b = bytes.fromhex(a['head_entry_hex'])
    if (N < 1 or not verify_inclusion(N - 1, N, leaf_hash(head_b), [bytes.fromhex(p) for p in a['head_proof_hex']], root)) \
            and 'head_inclusion' not in skip:
        raise Refused(3, 'head_inclusion', 'not leaf N - 1')
    head = parse_entry(head_b)
    if head is None or head['type'] != 'head': raise Refused(3, 'head_not_map_head')
    if head['covered'] >= N: raise Refused(3, 'head_covers_too_much')
    if head['epoch'] < client.get('newest_epoch', 0): raise Refused(3, 'stale_epoch')
    # 4
    beta = kg.verify(cfg['vrf_pk'], ident, bytes.fromhex(a['vrf_proof_hex']))
    if beta is None: raise Refused(4, 'vrf_proof')
    label = beta[:32]
    # 5
    mp = a['map_proof']
    res = kg.verify_proof(head['root'], label, mp['terminal'],
                          bytes.fromhex(mp['value_hex']) if 'value_hex' in mp else None,
                          bytes.fromhex(mp['other_label_hex']) if 'other_label_hex' in mp else None,
                          [bytes.fromhex(s) for s in mp['siblings_hex']])
    if res is None: raise Refused(5, 'map_proof')
    seen = client.get('seen')
    result = {'never_published': res == 'absent', 'epoch': head['epoch'], 'covered_size': head['covered'],
              'timestamp': head['timestamp'], 'label_hex': label.hex()}
    if res == 'absent':
        if a['state'] is not None and 'state_with_absence' not in skip: raise Refused(5, 'state_with_absence')
        if seen and seen['version'] > 0: raise Refused(7, 'absence_after_presence')
        result.update(device_ids_hex=[], version=0)
        return result
    s = a['state']
    if s is None: raise Refused(5, 'state_missing')
    # 6
    tombs = [bytes.fromhex(t) for t in s['tombstoned_hex']]
    if any(len(t) != 16 for t in tombs) and 'tombstone_length' not in skip: raise Refused(6, 'tombstone_length')
    if any(tombs[k] >= tombs[k + 1] for k in range(len(tombs) - 1)): raise Refused(6, 'tombstones_order')
    recs = [bytes.fromhex(r) for r in s['devices_hex']]
    parsed = [dr.parse_record(r) for r in recs]
    if any(isinstance(p, str) for p in parsed): raise Refused(6, 'record_malformed')
    ids = [p.device_id for p in parsed]
    if any(ids[k] >= ids[k + 1] for k in range(len(ids) - 1)): raise Refused(6, 'devices_order')
    hist = [(h['index'], bytes.fromhex(h['leaf_hash_hex'])) for h in s['history']]
    if not hist or any(len(h) != 32 for _, h in hist): raise Refused(6, 'history_malformed')
    if any(hist[k][0] >= hist[k + 1][0] for k in range(len(hist) - 1)): raise Refused(6, 'history_order')
    if hist[-1][0] >= head['covered']: raise Refused(6, 'history_beyond_covered')
    chains = [bytes(32)]
    for i, h in hist: chains.append(sha256(b'\x04' + chains[-1] + u64(i) + h))
    version, newest = len(hist), hist[-1][0]
    # the newest change's entry: a change entry of this label at version = the history's length, whose
    # leaf hash is the history's last
    if s.get('newest_entry_hex') is None or s.get('newest_sealed_change_hex') is None: raise Refused(6, 'newest_entry_missing')
    entry_b = bytes.fromhex(s['newest_entry_hex'])
    entry = dr.parse_change_entry(entry_b)
    if entry is None: raise Refused(6, 'newest_entry_malformed')
    if entry['label'] != label: raise Refused(6, 'newest_entry_label')
    if entry['version'] != version: raise Refused(6, 'newest_entry_version')
    if leaf_hash(entry_b) != hist[-1][1] and 'newest_entry_not_last' not in skip: raise Refused(6, 'newest_entry_not_last')
    # its sealed change opens its commitment, names its kind, the history's one-before-last index
    # (2^64 - 1 for a history of one) and the digest of the devices and tombstones shown
    sealed = bytes.fromhex(s['newest_sealed_change_hex'])
    sc = dr.parse_sealed(sealed)
    if isinstance(sc, str): raise Refused(6, 'sealed_change_malformed', sc)
    if dr.commitment(label, entry['version'], sealed) != entry['commitment'] and 'commitment_mismatch' not in skip:
        raise Refused(6, 'commitment_mismatch')
    if sc['kind'] != entry['kind'] and 'kind_mismatch' not in skip: raise Refused(6, 'kind_mismatch')
    if sc['previous_index'] != (hist[-2][0] if len(hist) > 1 else None) and 'previous_index_mismatch' not in skip:
        raise Refused(6, 'previous_index_mismatch')
    if sc['set_digest'] != dr.set_digest_of(recs, tombs) and 'set_digest_mismatch' not in skip:
        raise Refused(6, 'set_digest_mismatch')
    # the map value from the public part
    if dr.map_value_of(version, newest, chains[-1]).hex() != mp['value_hex'] and 'map_value_mismatch' not in skip:
        raise Refused(6, 'map_value_mismatch')
    # 7
    if seen:
        if version < seen['version']: raise Refused(7, 'version_went_back')
        if chains[seen['version']].hex() != seen['chain_hex']: raise Refused(7, 'history_rewritten')
    result.update(device_ids_hex=[d.hex() for d in ids], version=version, chain_hex=chains[-1].hex(),
                  tombstoned_hex=[t.hex() for t in tombs])
    return result

def expect_of(r):
    return {k: r[k] for k in ('never_published', 'device_ids_hex', 'version', 'epoch', 'covered_size')}

# ---------------------------------------------------------------- self tests
def self_test():
    # RFC 9162: every inclusion proof of trees of 1..12 leaves verifies, and only at its own index
    hs = [sha256(b'leaf %d' % i) for i in range(12)]
    for n in range(1, 13):
        r = mth(hs[:n])
        for m in range(n):
            p = inclusion_path(m, hs[:n])
            assert verify_inclusion(m, n, hs[m], p, r)
            assert not any(verify_inclusion(j, n, hs[m], p, r) for j in range(n + 1) if j != m)
    # the shared vector files when present (not needed for the output)
    vec = os.environ.get('KEYGLASS_VECTORS') or os.path.join(HERE, '..', '..', '..', 'shared', 'vectors')
    used = []
    try:
        with open(os.path.join(vec, 'transparency-dev-merkle.json')) as f: t = json.load(f)['reference_tree']
        lv = [leaf_hash(bytes.fromhex(x)) for x in t['leaf_inputs_hex']]
        for n, rt in t['root_hashes_hex_by_size'].items():
            assert mth(lv[:int(n)]).hex() == rt, 'RFC 6962 reference tree root %s' % n
        used.append('transparency-dev merkle roots')
    except FileNotFoundError: pass
    try:
        with open(os.path.join(vec, 'c2sp-spec-examples.json')) as f: c = json.load(f)['signed_note_verifiable_example']
        name, kid, pk = parse_verifier_key(c['vkey'])
        note = c['signed_note']; cut = note.rindex('\n\n'); text = note[:cut + 1]
        blob = base64.b64decode(note[cut + 2:].split(' ')[-1])
        assert blob[:4] == kid and dr.ed_verify(pk, text.encode(), blob[4:]), 'C2SP signed-note example'
        used.append('C2SP signed-note example')
    except FileNotFoundError: pass
    return used

def check_file(d):
    """What is written, read back the way a consumer reads it: every good lookup verifies with its expect,
    every bad one is refused at its step for its reason."""
    vkey, pin = d['log_verifier_key'], bytes.fromhex(d['vrf_public_key_hex'])
    notes = {c['size']: c['note'] for c in d['checkpoints']}
    for l in d['lookups']:
        a = dict(l, checkpoint_note=notes[l['checkpoint_size']], config_entry_hex=d['entries_hex'][0],
                 head_entry_hex=d['entries_hex'][l['checkpoint_size'] - 1])
        assert expect_of(verify_lookup(vkey, a, pinned_vrf_pk=pin)) == l['expect']
    for l in d['extra_lookups']:
        assert expect_of(verify_lookup(vkey, l, pinned_vrf_pk=pin, client=l.get('client_state'))) == l['expect']
    for b in d['bad_lookups']:
        try:
            verify_lookup(vkey, b, pinned_vrf_pk=bytes.fromhex(b['pinned_vrf_key_hex']) if b.get('needs_pinned_vrf_key') else None,
                          client=b.get('client_state'))
            raise AssertionError(b['why'])
        except Refused as e:
            assert (e.step, e.reason) == (b['refused_at_step'], b['reason']), b['why']

# ---------------------------------------------------------------- main
def main():
    used = self_test()
    g = build_main()
    verdicts, heads = replay(g.entries, g.sealed)
    assert all(heads.values()) and sorted(heads) == [3, 7, 9], heads
    assert verdicts == {1: 'first', 2: 'chained', 4: 'first', 5: 'first', 6: 'chained', 8: 'chained'}, verdicts
    pv, ph = replay(g.entries)          # an anonymous auditor: the same heads from the public parts alone
    assert ph == heads and set(pv.values()) == {'sealed'}
    fork = build_fork()
    fv, fh = replay(fork.entries, fork.sealed)
    assert all(fh.values()) and fv[4] == 'ghost_device' and all(replay(fork.entries)[1].values())
    ovrf = build_other_vrf()
    assert all(replay(ovrf.entries, ovrf.sealed)[1].values())
    forged = build_forged()
    fgv, fgh = replay(forged.entries, forged.sealed)
    assert all(fgh.values()) and all(replay(forged.entries)[1].values())
    assert fgv == {1: 'first', 2: 'set_mismatch', 3: 'first', 4: 'bad_opening', 5: 'bad_opening'}, fgv

    name = ORIGIN.decode()
    log_pk = dr.ed_public(LOG_SEED)
    vkey = verifier_key(name, log_pk)
    vrf_pk = kg.public_key(VRF_SEED)
    sizes = sorted(i + 1 for i in g.heads)
    out = {'source': 'Generated by an independent Python 3 (standard library only) implementation written from '
                     'Spec/directory.md (step B: sealed changes, commitments, the public map value, lookups\' step 6 '
                     'with the newest entry and its sealed change) and Spec/map.md alone, without reading the Swift code '
                     '(Spec/reference/lookup_reference.py, reusing keyglass_v2_reference.py and device_reference.py).',
           'origin': name,
           'log_verifier_key': vkey,
           'log_signing_seed_hex': LOG_SEED.hex(),
           'vrf_public_key_hex': vrf_pk.hex(),
           'vrf_seed_hex': VRF_SEED.hex(),
           'labels_hex': {i: g.label(i).hex() for i in IDENTITIES},
           'conventions': {
               'checkpoint': 'C2SP tlog-checkpoint text "origin\\nsize\\nbase64(root)\\n" in a C2SP signed note; the '
                             'key name is the origin; one Ed25519 signature line by the log key',
               'tree': 'RFC 9162 section 2.1: leaf hash SHA-256(0x00 || entry), node SHA-256(0x01 || left || right); '
                       'inclusion proofs per section 2.1.3, of leaf 0 and leaf N - 1 in the checkpoint\'s tree',
               'chain_leaf_hash': 'the h of a label\'s chain (and of history entries) is the entry\'s RFC 9162 leaf hash',
               'entries': 'change entries are step B\'s: 0x02 || 0x02 || timestamp (8) || label (32) || version (8) || kind (1) '
                          '|| commitment (32), 83 bytes; sealed_changes_hex[i] is the sealed change of entry i (null for the '
                          'config and map heads): opening (16) || kind (1) || target length (2) || target || authority (1) || '
                          '[signer (16) || signature (64)] || previous index (8, 2^64 - 1 for none) || set digest (32); '
                          'commitment = HMAC-SHA256(SHA-256("keyglass-commitment-key-v1"), opening || label || version (8) || '
                          'the sealed change after its opening)',
               'openings': 'deterministic, for the vectors only (a log draws each at random): the first 16 bytes of '
                           'SHA-256 of the ASCII string "opening <log> <i>", <i> the entry\'s log index (decimal) and <log> '
                           'one of main (this file\'s entries_hex), fork, other-vrf, forged (the logs some bad and extra '
                           'lookups come from)',
               'map_value': 'a label\'s map value is SHA-256(0x05 || version (8) || newest index (8) || chain (32)): the '
                            'public part only',
               'set_digest': 'SHA-256(0x06 || active count (4) || each active record as length (2) || record, ascending by id '
                             '|| tombstone count (4) || each tombstoned id, ascending); step 6 computes it over the devices '
                             'and tombstones shown, in the order shown',
               'state': 'a lookup\'s state: devices_hex (active records, ascending id), tombstoned_hex (ascending), '
                        'history ([{index, leaf_hash_hex}], every change of the label, oldest first), newest_entry_hex (the '
                        'entry of the history\'s last change) and newest_sealed_change_hex (its sealed change); null when the '
                        'map proves the label absent',
               'refusals': 'bad_lookups name the step (1-7) and a reason; step 6\'s reasons, in the order checked: '
                           'tombstone_length, tombstones_order, record_malformed, devices_order, history_malformed, '
                           'history_order, history_beyond_covered, newest_entry_missing, newest_entry_malformed, '
                           'newest_entry_label, newest_entry_version, newest_entry_not_last, sealed_change_malformed, '
                           'commitment_mismatch, kind_mismatch, previous_index_mismatch, set_digest_mismatch, '
                           'map_value_mismatch; only_this_refuses: the answer verifies with that one check left out (or '
                           'without the pinned VRF key, or without the client state)',
               'covered_size': 'each map head\'s covered size is its own index: it covers every entry before it',
               'timestamps': 'entry i is stamped 1767225600000 + 1000 * i (ms)',
               'devices': 'device id = SHA-256("keyglass-lookup-ref device id <name>")[:16], signing seed = '
                          'SHA-256("keyglass-lookup-ref device seed <name>"); seeds of the VRF and log keys likewise',
               'vrf_alpha': 'the identity\'s NFC UTF-8 bytes; the label is the first 32 bytes of beta',
               'lookup_fields': 'a lookup\'s checkpoint is checkpoints[size = checkpoint_size].note, its leaf 0 is '
                                'entries_hex[0] and its head is entries_hex[checkpoint_size - 1]; bad_lookups and '
                                'extra_lookups carry these themselves (checkpoint_note, config_entry_hex, '
                                'head_entry_hex)',
               'client_state': 'newest_epoch: the newest epoch this client verified for the log (step 3); seen: the '
                               'version and chain this client verified before for the identity (step 7)',
               'top_level_fields': 'origin; log_verifier_key (C2SP vkey "name+keyid+base64(0x01 || key)"); '
                                   'log_signing_seed_hex and vrf_seed_hex (the seeds, for regeneration); '
                                   'vrf_public_key_hex; labels_hex (identity -> its label under this VRF key); entries_hex '
                                   '(the main log, leaf i at position i); sealed_changes_hex (aligned with entries_hex); '
                                   'entries_what (informative: what each entry is, the rule\'s verdict and the version); '
                                   'checkpoints ([{size, note}], the signed checkpoint after each map head); lookups, '
                                   'extra_lookups, bad_lookups',
               'answer_fields': 'identity; checkpoint_size (N); checkpoint_note; config_entry_hex and config_proof_hex '
                                '(leaf 0 and its inclusion proof); head_entry_hex and head_proof_hex (leaf N - 1 and its '
                                'proof); vrf_proof_hex (ECVRF proof, 80 bytes); map_proof {terminal: member | empty | '
                                'other_leaf, value_hex (member, other_leaf), other_label_hex (other_leaf), siblings_hex '
                                '(from depth 0 down)}; state (see "state")',
               'expect': 'what a verified lookup yields: never_published, device_ids_hex (of the devices shown, '
                         'ascending), version (the history\'s length; 0 if never published), epoch and covered_size (of '
                         'the head)',
               'lookups': 'lookups: answers for every identity at every checkpoint of the main log (answer fields but the '
                          'note, config and head, see lookup_fields), each with expect; they verify for a client with no '
                          'state, with or without the VRF key pinned',
               'extra_lookups': 'extra_lookups: self-contained answers that verify for the client in client_state (none: '
                                'a fresh client), with note and expect',
               'bad_lookups': 'bad_lookups: self-contained answers that must be refused at refused_at_step for reason '
                              '(see refusals), with why; client_state when the refusal needs the client\'s memory; '
                              'needs_pinned_vrf_key and pinned_vrf_key_hex when it needs a pinned VRF key; '
                              'only_this_refuses as in refusals',
           },
           'entries_hex': [e.hex() for e in g.entries],
           'sealed_changes_hex': [g.sealed[i].hex() if i in g.sealed else None for i in range(len(g.entries))],
           'entries_what': g.what,
           'checkpoints': [{'size': n, 'note': g.checkpoint(n)} for n in sizes]}

    # ---- good lookups
    lookups = []
    for n in sizes:
        for ident in IDENTITIES:
            a = answer(g, n, ident)
            r = verify_lookup(vkey, a, pinned_vrf_pk=vrf_pk)
            assert r == verify_lookup(vkey, a)
            lk = {k: a[k] for k in GOOD_FIELDS}
            lk['expect'] = expect_of(r)
            lookups.append(lk)
    out['lookups'] = lookups
    # the expectations the scenario implies
    ex = {(l['identity'], l['checkpoint_size']): l['expect'] for l in lookups}
    A, B, C, E = (dev_id(x).hex() for x in 'ABCE')
    want = {('alice@example.com', 4): (False, sorted([A, B]), 2), ('bob@example.com', 4): (True, [], 0),
            ('carol@example.com', 4): (True, [], 0), ('alice@example.com', 8): (False, sorted([A, B]), 2),
            ('bob@example.com', 8): (False, [E], 1), ('carol@example.com', 8): (False, [], 2),
            ('alice@example.com', 10): (False, [A], 3), ('bob@example.com', 10): (False, [E], 1),
            ('carol@example.com', 10): (False, [], 2)}
    for (ident, n), e in ex.items():
        w = want.get((ident, n), (True, [], 0))
        assert (e['never_published'], e['device_ids_hex'], e['version']) == w, (ident, n, e)
        assert e['epoch'] == sizes.index(n) + 1 and e['covered_size'] == n - 1

    # ---- extra good lookups: an absence with an empty terminal, and client state (steps 3 and 7 pass)
    stateful = []
    def add_stateful(a, client, note):
        r = verify_lookup(vkey, a, pinned_vrf_pk=vrf_pk, client=client)
        e = dict(a, note=note, expect=expect_of(r))
        if client is not None: e['client_state'] = client
        stateful.append(e)
    for n in sizes[1:]:   # (a map of one label has no empty subtree) the first never-published identity whose label's path ends in an empty subtree
        k = next(k for k in range(64) if kg.make_proof(g.heads[n - 1]['pairs'], g.label('absent-%d@example.com' % k))[0] == 'empty')
        add_stateful(answer(g, n, 'absent-%d@example.com' % k), None,
                     'never published, proved by an empty terminal (absent-k: the first k whose label ends so)')
    r4 = verify_lookup(vkey, answer(g, 4, 'alice@example.com'))
    r8b = verify_lookup(vkey, answer(g, 8, 'bob@example.com'))
    add_stateful(answer(g, 10, 'alice@example.com'),
                 {'newest_epoch': 1, 'seen': {'version': 2, 'chain_hex': r4['chain_hex']}},
                 'alice seen at version 2 (epoch 1); now version 3 whose history extends the one seen')
    add_stateful(answer(g, 10, 'bob@example.com'),
                 {'newest_epoch': 3, 'seen': {'version': 1, 'chain_hex': r8b['chain_hex']}},
                 'bob seen at version 1; the same epoch again')
    add_stateful(answer(g, 10, 'dave@example.com'), {'newest_epoch': 2}, 'dave still never published')
    a = answer(forged, 7, 'alice@example.com')
    a['state']['devices_hex'] = sorted(a['state']['devices_hex'] + [rec('G').hex()], key=lambda r: r[:32])
    add_stateful(a, None, 'a log (signed by the log key) whose sealed change of alice\'s newest change (A adds B) commits to '
                 'A, B and a ghost G, the answer showing exactly that set: it verifies (a contact opens the newest change '
                 'only; the owner\'s monitor, opening every change, names it set_mismatch)')
    out['extra_lookups'] = stateful

    # ---- bad lookups
    bad = []
    def add_bad(a, step, reason, why, client=None, pinned=None, passes_without=None):
        """passes_without: 'pin', 'client' or 'check': the answer verifies without the pinned VRF key,
        without the client's state, or with the refusing check left out: that one thing is what refuses."""
        try:
            verify_lookup(vkey, a, pinned_vrf_pk=pinned, client=client)
            raise AssertionError('accepted: ' + why)
        except Refused as e:
            assert (e.step, e.reason) == (step, reason), (why, e.step, e.reason, str(e))
        if passes_without == 'pin': verify_lookup(vkey, a, client=client)
        elif passes_without == 'client': verify_lookup(vkey, a, pinned_vrf_pk=pinned)
        elif passes_without == 'check': verify_lookup(vkey, a, pinned_vrf_pk=pinned, client=client, skip=(reason,))
        b = {'why': why, 'refused_at_step': step, 'reason': reason,
             'only_this_refuses': passes_without is not None}
        b.update(a)
        if client is not None: b['client_state'] = client
        if pinned is not None: b['needs_pinned_vrf_key'] = True; b['pinned_vrf_key_hex'] = pinned.hex()
        bad.append(b)

    # a ghost shown only to this contact
    a = answer(g, 10, 'alice@example.com')
    a['state']['devices_hex'] = sorted(a['state']['devices_hex'] + [rec('G').hex()], key=lambda r: r[:32])
    add_bad(a, 6, 'set_digest_mismatch', 'a ghost device G added to the devices shown only (the newest change commits to '
            'the set without it; the map value, now the public part only, still matches)', passes_without='check')
    # a device hidden from this contact
    a = answer(g, 4, 'alice@example.com')
    a['state']['devices_hex'] = [r for r in a['state']['devices_hex'] if r[:32] != dev_id('B').hex()]
    add_bad(a, 6, 'set_digest_mismatch', 'device B removed from the devices shown only (alice has A and B at this head)',
            passes_without='check')
    # the state of another identity
    a = answer(g, 8, 'alice@example.com'); a['state'] = answer(g, 8, 'bob@example.com')['state']
    add_bad(a, 6, 'newest_entry_label', "bob's state (devices, tombstones, history, newest entry and sealed change) shown "
                                        "with alice's proofs: the newest entry is bob's label's")
    # a VRF proof for another identity
    a = answer(g, 10, 'alice@example.com'); a['vrf_proof_hex'] = answer(g, 10, 'bob@example.com')['vrf_proof_hex']
    add_bad(a, 4, 'vrf_proof', "bob's VRF proof given for alice")
    # a map proof of another label
    a = answer(g, 10, 'alice@example.com'); a['map_proof'] = answer(g, 10, 'bob@example.com')['map_proof']
    add_bad(a, 5, 'map_proof', "bob's membership proof given for alice's label (alice's own state shown)")
    # the head proof of a non-last leaf
    a = answer(g, 10, 'alice@example.com', head_at=7)
    assert verify_inclusion(7, 10, leaf_hash(g.entries[7]), [bytes.fromhex(p) for p in a['head_proof_hex']],
                            mth(g.hashes(10)))
    add_bad(a, 3, 'head_inclusion', 'the epoch 2 head (leaf 7) with its valid inclusion proof at index 7 in the tree of '
                                    'size 10, given as leaf N - 1 = 9 (a stale head inside a fresh checkpoint)',
            passes_without='check')
    # leaf N - 1 not a map head
    a = answer(g, 9, 'alice@example.com')
    add_bad(a, 3, 'head_not_map_head', 'a checkpoint of size 9 (signed by the log key): leaf 8 is a change, not a map head '
                                       '(the rest of the answer from the epoch 2 head)')
    # another VRF key in leaf 0 (only a client that pinned the log's VRF key can tell)
    a = answer(ovrf, 3, 'alice@example.com')
    add_bad(a, 2, 'config_vrf_key', 'a log signed by the same key and origin whose leaf 0 names another VRF key, '
            'every label and proof consistent under that key: refused only by a client that pinned the VRF key '
            '(pinned_vrf_key_hex); without the pin it verifies', pinned=vrf_pk, passes_without='pin')
    # another origin in leaf 0
    other_entries = [enc_config(OTHER_ORIGIN, vrf_pk)] + g.entries[1:]
    a = answer(g, 10, 'alice@example.com', entries=other_entries)
    add_bad(a, 2, 'config_origin', 'leaf 0 names origin %s; the checkpoint (signed by the log key) names %s'
            % (OTHER_ORIGIN.decode(), name), passes_without='check')
    # a history with one link changed
    a = answer(g, 10, 'alice@example.com')
    h1 = a['state']['history'][1]; h1['leaf_hash_hex'] = kg.flip_bit(bytes.fromhex(h1['leaf_hash_hex']), 0).hex()
    add_bad(a, 6, 'map_value_mismatch', "alice's history with the leaf hash of its second change (index 2, not the newest) "
                                        'altered: the chain, so the map value, differs', passes_without='check')
    # tombstones re-split (main log: one tombstone split into two 8-byte pieces)
    a = answer(g, 8, 'carol@example.com')
    t = a['state']['tombstoned_hex'][0]; a['state']['tombstoned_hex'] = [t[:16], t[16:]]
    add_bad(a, 6, 'tombstone_length', "carol's one tombstoned id split into two 8-byte pieces (the count changes too, "
                                      'so the set digest would not match either)')
    # tombstones re-split keeping the map value (fork: carol has two tombstones)
    a = answer(fork, 10, 'carol@example.com')
    verify_lookup(vkey, a)
    assert len(a['state']['tombstoned_hex']) == 2
    cat = bytes.fromhex(''.join(a['state']['tombstoned_hex']))
    k = next(k for k in range(1, 16) if cat[:k] < cat[k:])   # pieces still in ascending order
    a['state']['tombstoned_hex'] = [cat[:k].hex(), cat[k:].hex()]
    add_bad(a, 6, 'tombstone_length', "carol's two tombstoned ids (32 bytes) re-split into pieces of %d and %d bytes: "
            'same count, same bytes, so the same set digest; only the 16-byte check refuses (the checkpoint of a fork '
            'signed by the log key)' % (k, 32 - k), passes_without='check')
    # step B: the newest entry and its sealed change
    a = answer(g, 10, 'alice@example.com')
    sb = bytearray.fromhex(a['state']['newest_sealed_change_hex']); sb[0] ^= 0x01
    a['state']['newest_sealed_change_hex'] = bytes(sb).hex()
    add_bad(a, 6, 'commitment_mismatch', "alice's newest sealed change with the lowest bit of its opening flipped: it does "
            'not open the entry\'s commitment', passes_without='check')
    a = answer(g, 10, 'alice@example.com')
    a['state']['newest_sealed_change_hex'] = g.sealed[2].hex()
    add_bad(a, 6, 'commitment_mismatch', "alice's newest entry (index 8, a revoke) shown with the sealed change of her "
            'change at index 2 (an add)')
    a = answer(g, 10, 'alice@example.com')
    a['state']['newest_sealed_change_hex'] += '00'
    add_bad(a, 6, 'sealed_change_malformed', "alice's newest sealed change with a byte after its set digest")
    a = answer(forged, 7, 'alice@example.com')
    add_bad(a, 6, 'set_digest_mismatch', 'a log (signed by the log key) whose sealed change of alice\'s newest change (A '
            'adds B) commits to A, B and a ghost G, the answer showing A and B: a sealed change committing to another set '
            'than shown (showing A, B and G verifies: extra_lookups)', passes_without='check')
    a = answer(g, 10, 'alice@example.com')
    eb = bytearray.fromhex(a['state']['newest_entry_hex']); eb[9] ^= 0x01   # the timestamp's last byte
    a['state']['newest_entry_hex'] = bytes(eb).hex()
    add_bad(a, 6, 'newest_entry_not_last', "alice's newest entry with its timestamp changed by 1 ms: same label, version, "
            'kind and commitment (its sealed change still opens it), but its leaf hash is not the history\'s last',
            passes_without='check')
    a = answer(g, 10, 'alice@example.com')
    a['state']['newest_entry_hex'] = g.entries[2].hex(); a['state']['newest_sealed_change_hex'] = g.sealed[2].hex()
    add_bad(a, 6, 'newest_entry_version', "alice's change at index 2 (version 2) and its sealed change shown as the newest: "
            'the history has 3 changes')
    a = answer(forged, 7, 'bob@example.com')
    add_bad(a, 6, 'previous_index_mismatch', 'a log (signed by the log key) whose sealed change of bob\'s second change '
            'names previous index 2^64 - 1 (none) where the history\'s one before last is 3', passes_without='check')
    a = answer(forged, 7, 'carol@example.com')
    add_bad(a, 6, 'kind_mismatch', 'a log (signed by the log key) whose sealed change of carol\'s only change says rotate '
            'where the entry says add', passes_without='check')
    # a checkpoint signed by another key (same name)
    a = answer(g, 10, 'alice@example.com', seed=OTHER_LOG_SEED)
    add_bad(a, 1, 'checkpoint_signature', 'the size-10 checkpoint signed by another key under the same name (key ID %s)'
            % key_id(name, dr.ed_public(OTHER_LOG_SEED)).hex(), passes_without='check')
    # stale head for this client
    add_bad(answer(g, 4, 'alice@example.com'), 3, 'stale_epoch',
            'the epoch 1 answer to a client that verified epoch 3 of this log', client={'newest_epoch': 3},
            passes_without='client')
    # state shown with an absence proof
    a = answer(g, 10, 'dave@example.com'); a['state'] = answer(g, 10, 'alice@example.com')['state']
    add_bad(a, 5, 'state_with_absence', "dave proved absent, yet alice's state is shown", passes_without='check')
    # absence after presence (fork)
    add_bad(answer(fork, 3, 'alice@example.com'), 7, 'absence_after_presence',
            'a fork (signed by the log key) where alice was never published, to a client that saw alice at version 2',
            client={'seen': {'version': 2, 'chain_hex': r4['chain_hex']}}, passes_without='client')
    # a forked history (fork)
    add_bad(answer(fork, 10, 'alice@example.com'), 7, 'history_rewritten',
            'a fork (signed by the log key) where alice\'s second change is an operator ghost add of G, to a client '
            'that saw alice at version 2 with the real chain', client={'seen': {'version': 2, 'chain_hex': r4['chain_hex']}},
            passes_without='client')
    # version went back
    r10 = verify_lookup(vkey, answer(g, 10, 'alice@example.com'))
    add_bad(answer(g, 8, 'alice@example.com'), 7, 'version_went_back',
            'alice at version 2 to a client that saw her at version 3 (a client without an epoch for the log)',
            client={'seen': {'version': 3, 'chain_hex': r10['chain_hex']}}, passes_without='client')
    out['bad_lookups'] = bad

    text = json.dumps(out, indent=1) + '\n'
    check_file(json.loads(text))
    if '--check' in sys.argv[1:]:
        try:
            with open(TARGET) as f: committed = f.read()
        except OSError as e:
            print('%s: cannot read (%s)' % (TARGET, e), file=sys.stderr); sys.exit(1)
        if committed != text:
            print('%s differs from what the reference implementation produces' % TARGET, file=sys.stderr); sys.exit(1)
        print('%s matches the reference implementation' % TARGET); return
    with open(TARGET, 'w') as f: f.write(text)
    print('wrote ' + TARGET)
    print('self tests: RFC 9162 inclusion (1..12 leaves)%s' % ''.join(', ' + u for u in used))
    print('entries %d, checkpoints %d, lookups %d (absence terminals %s), extra %d, bad lookups %d'
          % (len(g.entries), len(out['checkpoints']), len(lookups),
             sorted({l['map_proof']['terminal'] for l in lookups + stateful if l['expect']['never_published']}),
             len(stateful), len(bad)))
    for b in bad: print('  step %d %-22s %s' % (b['refused_at_step'], b['reason'], b['why'][:90]))

if __name__ == '__main__':
    main()
