// Verifying a Shanju donor receipt in the browser, independently of the server's word.
//
// An ES module with no build step. SHA-256/SHA-512 and Ed25519 come from the vendored
// @noble/hashes and @noble/ed25519 (see /static/vendor/README.md): WebCrypto's crypto.subtle
// exists only in secure contexts (https or localhost), and a receipt must verify anywhere.
//
// - leafHash / nodeHash / rootFromInclusion: RFC 9162 §2.1.3.2 (RFC 6962 hashing), the same
//   algorithm as shanju.transparency.merkle.root_from_inclusion.
// - verifyCheckpoint: a C2SP signed note (tlog-checkpoint body) signed with Ed25519.
// - openCommitment: the donor commitment of a leaf (shanju.transparency.leaves).
// - verifyReceipt: every check of a "shanju-receipt/v1" document, step by step.

import { sha256, sha512 } from "../vendor/noble-hashes/sha2.js";
import * as ed from "../vendor/noble-ed25519/index.js";

ed.hashes.sha512 = sha512; // synchronous verify, no crypto.subtle

export const HASH_SIZE = 32;
export const RECEIPT_FORMAT = "shanju-receipt/v1";
export const DONOR_TAG = "shanju/donor-commitment/v1\n";
const SIGNATURE_PREFIX = "\u2014 "; // "— " (em dash, space) starts a signature line
const ED25519_ALG = 0x01;

const encoder = new TextEncoder();

/** A proof that cannot be right (bad index, wrong shape, hash of the wrong size). */
export class ProofError extends Error {
  constructor(message) {
    super(message);
    this.name = "ProofError";
  }
}

/** A checkpoint (signed note) that does not parse or whose signature does not verify. */
export class CheckpointError extends Error {
  constructor(message) {
    super(message);
    this.name = "CheckpointError";
  }
}

// --- bytes -------------------------------------------------------------------------------

/** Concatenate byte arrays. */
export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** True when two byte arrays hold the same bytes. */
export function equalBytes(a, b) {
  if (!(a instanceof Uint8Array) || !(b instanceof Uint8Array) || a.length !== b.length) {
    return false;
  }
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

/** Standard base64 (with padding) to bytes; throws on anything else. */
export function fromBase64(text) {
  if (typeof text !== "string" || !/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(text)) {
    throw new ProofError("not base64");
  }
  const bin = atob(text);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  // Canonical only: unused bits of the last character must be zero, or two texts of one
  // signature would both verify (as the Python verifier, transparency/checkpoints.py).
  if (toBase64(out) !== text) throw new ProofError("not canonical base64");
  return out;
}

/** Bytes to standard base64. */
export function toBase64(bytes) {
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}

/** Lower-case hex of bytes. */
export function toHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Hex (even length) to bytes; throws on anything else. */
export function fromHex(text) {
  if (typeof text !== "string" || text.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(text)) {
    throw new ProofError("not hex");
  }
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

// --- RFC 9162 hashing and inclusion proofs ---------------------------------------------------

/** The hash of a leaf: SHA-256(0x00 || bytes). */
export function leafHash(bytes) {
  return sha256(concat(Uint8Array.of(0x00), bytes));
}

/** The hash of an inner node: SHA-256(0x01 || left || right). */
export function nodeHash(left, right) {
  return sha256(concat(Uint8Array.of(0x01), left, right));
}

function toIndex(value, what) {
  if (typeof value === "bigint") return value;
  if (typeof value === "number" && Number.isSafeInteger(value)) return BigInt(value);
  if (typeof value === "string" && /^-?[0-9]+$/.test(value)) return BigInt(value);
  throw new ProofError(`${what} is not an integer`);
}

function checkHash(h) {
  if (!(h instanceof Uint8Array) || h.length !== HASH_SIZE) {
    throw new ProofError("a hash is not 32 bytes");
  }
}

/**
 * The root that `proof` implies for leaf hash `leaf` at `index` in a tree of `size` leaves
 * (RFC 9162 §2.1.3.2). `index` and `size` may be numbers, BigInts or decimal strings.
 * Throws ProofError for an impossible index or a proof of the wrong shape.
 */
export function rootFromInclusion(index, size, leaf, proof) {
  const idx = toIndex(index, "the leaf index");
  const sz = toIndex(size, "the tree size");
  if (!(idx >= 0n && idx < sz)) {
    throw new ProofError(`index ${idx} is outside a tree of size ${sz}`);
  }
  if (!Array.isArray(proof)) throw new ProofError("the proof is not a list");
  checkHash(leaf);
  proof.forEach(checkHash);
  let fn = idx;
  let sn = sz - 1n;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0n) throw new ProofError("the inclusion proof is too long");
    if ((fn & 1n) === 1n || fn === sn) {
      r = nodeHash(p, r);
      if ((fn & 1n) === 0n) {
        while (fn !== 0n && (fn & 1n) === 0n) {
          fn >>= 1n;
          sn >>= 1n;
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) throw new ProofError("the inclusion proof is too short");
  return r;
}

/** True when `proof` shows leaf hash `leaf` at `index` in the tree of `size` with `root`. */
export function verifyInclusion(index, size, leaf, proof, root) {
  try {
    return equalBytes(rootFromInclusion(index, size, leaf, proof), root);
  } catch (err) {
    if (err instanceof ProofError) return false;
    throw err;
  }
}

// --- checkpoints: C2SP signed notes -------------------------------------------------------

/**
 * Parse a verifier key `<name>+<8 hex key hash>+<base64(0x01 || Ed25519 public key)>` and
 * check its key hash. Returns {name, keyHash, publicKey}.
 */
export function parseVerifierKey(text) {
  if (typeof text !== "string") throw new CheckpointError("the verifier key is missing");
  // The name holds no "+"; the base64 key may: split at the first two only.
  const first = text.indexOf("+");
  const second = first < 0 ? -1 : text.indexOf("+", first + 1);
  if (second < 0) throw new CheckpointError("the verifier key is malformed");
  const parts = [text.slice(0, first), text.slice(first + 1, second), text.slice(second + 1)];
  if (!parts[0] || /\s/.test(parts[0]) || !/^[0-9a-f]{8}$/.test(parts[1])) {
    throw new CheckpointError("the verifier key is malformed");
  }
  let key;
  try {
    key = fromBase64(parts[2]);
  } catch {
    throw new CheckpointError("the verifier key is malformed");
  }
  if (key.length !== 33 || key[0] !== ED25519_ALG) {
    throw new CheckpointError("the verifier key is not an Ed25519 key");
  }
  const keyHash = sha256(concat(encoder.encode(parts[0]), Uint8Array.of(0x0a), key)).slice(0, 4);
  if (toHex(keyHash) !== parts[1]) {
    throw new CheckpointError("the verifier key's hash does not match its key");
  }
  return { name: parts[0], keyHash, publicKey: key.slice(1) };
}

/** Split a note into its body (ending in a newline) and signature lines; parse the body. */
export function parseCheckpoint(noteText) {
  if (typeof noteText !== "string") throw new CheckpointError("the checkpoint is missing");
  const cut = noteText.indexOf("\n\n");
  if (cut < 0 || !noteText.endsWith("\n")) {
    throw new CheckpointError("the checkpoint is not a signed note");
  }
  const body = noteText.slice(0, cut + 1);
  const signatures = [];
  for (const line of noteText.slice(cut + 2, -1).split("\n")) {
    if (!line.startsWith(SIGNATURE_PREFIX)) {
      throw new CheckpointError("the checkpoint has a malformed signature line");
    }
    const rest = line.slice(SIGNATURE_PREFIX.length).split(" ");
    if (rest.length !== 2 || !rest[0]) {
      throw new CheckpointError("the checkpoint has a malformed signature line");
    }
    let bytes;
    try {
      bytes = fromBase64(rest[1]);
    } catch {
      throw new CheckpointError("the checkpoint has a malformed signature line");
    }
    if (bytes.length < 5) throw new CheckpointError("the checkpoint has a malformed signature");
    signatures.push({ name: rest[0], keyHash: bytes.slice(0, 4), signature: bytes.slice(4) });
  }
  if (signatures.length === 0) throw new CheckpointError("the checkpoint is not signed");
  const lines = body.slice(0, -1).split("\n");
  if (lines.length < 3 || !lines[0]) throw new CheckpointError("the checkpoint body is malformed");
  if (!/^(0|[1-9][0-9]*)$/.test(lines[1])) {
    throw new CheckpointError("the checkpoint's tree size is malformed");
  }
  let root;
  try {
    root = fromBase64(lines[2]);
  } catch {
    throw new CheckpointError("the checkpoint's root hash is malformed");
  }
  if (root.length !== HASH_SIZE) throw new CheckpointError("the checkpoint's root hash is malformed");
  let timestampMs = null;
  for (const extra of lines.slice(3)) {
    const m = /^timestamp ([0-9]+)$/.exec(extra);
    if (m) timestampMs = Number(m[1]);
  }
  return {
    origin: lines[0],
    size: BigInt(lines[1]),
    root,
    timestampMs,
    body,
    signatures,
  };
}

/**
 * Verify a checkpoint against a verifier key: parse it and check the Ed25519 signature of
 * the key's name and hash over the note's body. Returns the parsed checkpoint plus `keyName`;
 * throws CheckpointError otherwise.
 */
export function verifyCheckpoint(noteText, verifierKey) {
  const key = parseVerifierKey(verifierKey);
  const note = parseCheckpoint(noteText);
  const candidates = note.signatures.filter(
    (s) => s.name === key.name && equalBytes(s.keyHash, key.keyHash),
  );
  if (candidates.length === 0) {
    throw new CheckpointError("the checkpoint has no signature by this key");
  }
  const message = encoder.encode(note.body);
  for (const s of candidates) {
    let ok = false;
    try {
      ok = s.signature.length === 64 && ed.verify(s.signature, message, key.publicKey);
    } catch {
      ok = false;
    }
    if (ok) return { ...note, keyName: key.name };
  }
  throw new CheckpointError("the checkpoint's signature does not verify");
}

// --- donor commitments --------------------------------------------------------------------

/** True when SHA-256(DONOR_TAG || salt || identity) is the leaf's `donor` commitment (hex). */
export function openCommitment(donorHex, saltHex, identity) {
  if (typeof donorHex !== "string" || typeof identity !== "string") return false;
  let salt;
  try {
    salt = fromHex(saltHex);
  } catch {
    return false;
  }
  const digest = sha256(concat(encoder.encode(DONOR_TAG), salt, encoder.encode(identity)));
  return toHex(digest) === donorHex.toLowerCase();
}

// --- receipts -----------------------------------------------------------------------------

function decodeLeaf(bytes) {
  try {
    const value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
    return value && typeof value === "object" && !Array.isArray(value) ? value : null;
  } catch {
    return null;
  }
}

/**
 * Check a receipt ("shanju-receipt/v1") against the verifier key the donor trusts. Returns
 * {ok, steps, checkpoint, leaves}: each step is {id, ok (true | false | null for skipped),
 * detail: {...what was checked}}; `ok` is true when no step failed.
 */
export function verifyReceipt(receipt, pinnedVerifierKey) {
  const steps = [];
  const step = (id, ok, detail = {}) => {
    steps.push({ id, ok, detail });
    return ok;
  };
  const leaves = [];
  let checkpoint = null;
  const finish = () => ({ ok: steps.every((s) => s.ok !== false), steps, checkpoint, leaves });

  if (!receipt || receipt.format !== RECEIPT_FORMAT || !Array.isArray(receipt.leaves)
      || receipt.leaves.length === 0) {
    step("format", false, { format: receipt ? receipt.format : null });
    return finish();
  }
  step("format", true, { format: receipt.format, ref: receipt.ref, leaves: receipt.leaves.length });

  // The key: the one the site publishes separately (pinned), not the one inside the receipt.
  step("key", receipt.verifier_key === pinnedVerifierKey, {
    pinned: pinnedVerifierKey, inReceipt: receipt.verifier_key,
  });

  // The signature over the checkpoint, and that the receipt's tree is the checkpoint's.
  try {
    checkpoint = verifyCheckpoint(receipt.checkpoint, pinnedVerifierKey);
  } catch (err) {
    step("signature", false, { error: String(err.message || err) });
    return finish();
  }
  const rootB64 = toBase64(checkpoint.root);
  step("signature", true, {
    keyName: checkpoint.keyName, origin: checkpoint.origin, size: String(checkpoint.size),
    root: rootB64, timestampMs: checkpoint.timestampMs,
  });
  step("tree", String(checkpoint.size) === String(receipt.tree_size)
    && rootB64 === receipt.root && checkpoint.origin === receipt.origin, {
    size: String(checkpoint.size), root: rootB64, origin: checkpoint.origin,
    receiptSize: String(receipt.tree_size), receiptRoot: receipt.root, receiptOrigin: receipt.origin,
  });

  // Each leaf: its bytes hash to the stated leaf hash, it belongs to this ref, and the proof
  // leads from the computed hash to the signed root.
  for (const item of receipt.leaves) {
    let data = null;
    try {
      data = fromBase64(item.data);
    } catch {
      data = null;
    }
    const fields = data ? decodeLeaf(data) : null;
    leaves.push({ index: item.index, fields });
    const computed = data ? leafHash(data) : null;
    let stated = null;
    try {
      stated = fromBase64(item.leaf_hash);
    } catch {
      stated = null;
    }
    step("leaf", computed !== null && stated !== null && equalBytes(computed, stated)
      && fields !== null && fields.ref === receipt.ref, {
      index: item.index,
      computed: computed ? toBase64(computed) : null,
      stated: item.leaf_hash,
      ref: fields ? fields.ref : null,
    });
    let implied = null;
    let error = null;
    try {
      const proof = (item.proof || []).map((p) => fromBase64(p));
      implied = computed ? rootFromInclusion(item.index, checkpoint.size, computed, proof) : null;
    } catch (err) {
      error = String(err.message || err);
    }
    step("inclusion", implied !== null && equalBytes(implied, checkpoint.root), {
      index: item.index, size: String(checkpoint.size), proofLength: (item.proof || []).length,
      implied: implied ? toBase64(implied) : null, root: rootB64, error,
    });
  }

  // The donor's commitment: only the donor's own receipt carries the opening.
  const committed = leaves.filter((l) => l.fields && typeof l.fields.donor === "string");
  if (!receipt.opening) {
    step("opening", null, { reason: committed.length ? "not_donor" : "no_commitment" });
  } else if (committed.length === 0) {
    step("opening", false, { reason: "no_commitment" });
  } else {
    const { identity, salt } = receipt.opening;
    step("opening", committed.every((l) => openCommitment(l.fields.donor, salt, identity)), {
      identity, salt, commitments: committed.map((l) => l.fields.donor),
    });
  }
  return finish();
}
