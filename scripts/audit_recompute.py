#!/usr/bin/env python3
"""Recomputes a C2-Concierge audit export without any of our code.

Usage: scripts/audit_recompute.py EXPORT.jsonl   (from `keyctl audit export`)

For every entry it rebuilds the canonical bytes (docs/audit.md), checks the
leaf hash SHA-256(0x00 || bytes), and for every checkpoint it recomputes the
RFC 6962 root over the first tree_size leaves and compares it with the root
in the signed note. Checkpoint signatures are checked separately with
`openssl dgst -sha256 -verify audit.pem -signature sig.der note.txt`.
Exit 0 when everything matches; 1 naming the first bad entry otherwise.
"""
import base64
import hashlib
import json
import sys


def canonical(e):
    obj = {
        "action": e["action"], "actor": e["actor"], "client": e["client_address"],
        "detail": e["detail"], "index": e["index"], "outcome": e["outcome"],
        "policy_hash": e["policy_hash"], "request_id": e["request_id"], "target": e["target"],
        "tenant": e["tenant_id"], "time_ms": e["time_ms"], "v": 1,
    }
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def mth(leaves):
    """Merkle Tree Hash of RFC 6962 section 2.1."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


def main(path):
    lines = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    entries = [l for l in lines if l.get("type") == "entry"]
    checkpoints = [l for l in lines if l.get("type") == "checkpoint"]
    leaves = []
    for i, e in enumerate(entries):
        if e["index"] != i:
            print(f"FAILED: entry {i} is missing (found index {e['index']})")
            return 1
        leaf = hashlib.sha256(b"\x00" + canonical(e)).digest()
        if leaf.hex() != e["leaf_hash"]:
            print(f"FAILED: entry {i} does not match its leaf hash")
            return 1
        leaves.append(leaf)
    for cp in sorted(checkpoints, key=lambda c: c["tree_size"]):
        size = cp["tree_size"]
        signed_root = base64.b64decode(cp["note"].split("\n")[2])
        if size > len(leaves) or mth(leaves[:size]) != signed_root:
            print(f"FAILED: checkpoint {cp['id']} (size {size}) does not match the entries")
            return 1
    print(f"OK: {len(leaves)} entries, {len(checkpoints)} checkpoint roots recomputed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
