// The receipt page: fetch the receipt and, separately, the site's published verifier key, run
// every check of transparency-verify.js, and show each step. The outcome is also in
// #verify[data-verify-status] ("running", "ok", "failed" or "error") for tests and scripts.

import { verifyReceipt } from "./transparency-verify.js";

const box = document.getElementById("verify");
const texts = JSON.parse(document.getElementById("verify-text").textContent);

function fill(template, values) {
  return template.replace(/\{(\w+)\}/g, (_, k) => (values[k] ?? "") + "");
}

function describe(step) {
  const d = step.detail;
  const state = step.ok === null ? "skipped" : step.ok ? "ok" : "fail";
  let key = `${step.id}_${state}`;
  if (step.id === "opening" && step.ok !== true) key = `opening_${d.reason || state}`;
  const short = (s) => (s && s.length > 16 ? s.slice(0, 16) + "…" : s);
  return fill(texts[key] || texts[`${step.id}_${state}`] || step.id, {
    ...d,
    root: short(d.root),
    computed: short(d.computed),
    implied: short(d.implied),
    error: d.error || "",
  });
}

function show(result) {
  const list = document.getElementById("verify-steps");
  list.replaceChildren();
  for (const step of result.steps) {
    const li = document.createElement("li");
    li.dataset.step = step.id;
    li.dataset.ok = step.ok === null ? "skipped" : String(step.ok);
    if (step.detail.index !== undefined) li.dataset.index = String(step.detail.index);
    const mark = document.createElement("span");
    mark.className = "mark";
    mark.textContent = step.ok === null ? "–" : step.ok ? "✓" : "✗";
    const title = document.createElement("b");
    title.textContent = texts[`title_${step.id}`] || step.id;
    const what = document.createElement("span");
    what.className = "what";
    what.textContent = describe(step);
    li.append(mark, title, what);
    list.append(li);
  }
}

function finish(status, message) {
  box.dataset.verifyStatus = status;
  document.getElementById("verify-result").textContent = message;
}

async function run() {
  try {
    const [receiptResp, keyResp] = await Promise.all([
      fetch(box.dataset.receiptUrl, { credentials: "same-origin", cache: "no-store" }),
      fetch(box.dataset.keyUrl, { cache: "no-store" }),
    ]);
    if (!receiptResp.ok || !keyResp.ok) {
      throw new Error(`HTTP ${receiptResp.ok ? keyResp.status : receiptResp.status}`);
    }
    const receipt = await receiptResp.json();
    const published = await keyResp.json();
    document.getElementById("verifier-key").textContent = published.verifier_key;
    const result = verifyReceipt(receipt, published.verifier_key);
    show(result);
    if (result.ok) finish("ok", texts.result_ok);
    else finish("failed", texts.result_failed);
  } catch (err) {
    finish("error", fill(texts.result_error, { error: String(err && err.message || err) }));
  }
}

run();
