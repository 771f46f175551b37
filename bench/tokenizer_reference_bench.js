// Baseline of the tokenizer benchmark: Hugging Face tokenizers (Rust, through the @anush008/tokenizers
// binding installed in tests/node) loading the same tokenizer.json and encoding and decoding the same
// text file as bench_tokenizer, in the same run. Wall time; like Google Benchmark, each measure
// repeats until it has run MIN_SECONDS and reports the mean (after one untimed warm-up run).
//
//   node bench/tokenizer_reference_bench.js TOKENIZER.json TEXT_FILE
//
// Prints "key value" lines: load_seconds, encode_bytes_per_second, encode_tokens,
// decode_bytes_per_second (bench/report.py reads them).
"use strict";
const fs = require("fs");
const path = require("path");
const { createRequire } = require("module");

const { Tokenizer } = createRequire(path.join(__dirname, "..", "tests", "node", "package.json"))("@anush008/tokenizers");

const MIN_SECONDS = 0.5;

// Mean wall seconds of one call of the async `run`.
async function meanSeconds(run) {
  await run();
  let runs = 0;
  const start = process.hrtime.bigint();
  let elapsed = 0;
  while (elapsed < MIN_SECONDS) {
    await run();
    ++runs;
    elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  }
  return elapsed / runs;
}

async function main() {
  const [tokenizerPath, textPath] = process.argv.slice(2);
  if (!tokenizerPath || !textPath) throw new Error("usage: node tokenizer_reference_bench.js TOKENIZER.json TEXT_FILE");
  const text = fs.readFileSync(textPath, "utf8");
  const textBytes = Buffer.byteLength(text, "utf8");

  const loadSeconds = await meanSeconds(async () => Tokenizer.fromFile(tokenizerPath));
  const tokenizer = Tokenizer.fromFile(tokenizerPath);
  // Only the encoding is timed, not copying its ids into a JS array.
  const encodeSeconds = await meanSeconds(async () => tokenizer.encode(text, null, { addSpecialTokens: false }));
  const ids = (await tokenizer.encode(text, null, { addSpecialTokens: false })).getIds();
  let decodedBytes = 0;
  const decodeSeconds = await meanSeconds(async () => {
    decodedBytes = Buffer.byteLength(await tokenizer.decode(ids, false), "utf8");
  });
  console.log(`load_seconds ${loadSeconds.toFixed(6)}`);
  console.log(`encode_bytes_per_second ${(textBytes / encodeSeconds).toFixed(0)}`);
  console.log(`encode_tokens ${ids.length}`);
  console.log(`decode_bytes_per_second ${(decodedBytes / decodeSeconds).toFixed(0)}`);
}

main().catch((error) => {
  console.error(`tokenizer_reference_bench.js: ${error && error.stack ? error.stack : error}`);
  process.exit(1);
});
