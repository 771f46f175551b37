// Reference side of the tokenizer parity tests: runs Hugging Face tokenizers (Rust, through the
// @anush008/tokenizers binding) on a request and writes the results.
//
//   node encode.js REQUEST.json RESPONSE.json
//
// REQUEST:  {"tokenizer": "path/tokenizer.json",
//            "encode": [text, ...],
//            "utf8_hex": [hex bytes, ...],   // possibly invalid UTF-8, decoded with TextDecoder
//            "decode": [[id, ...], ...]}
// RESPONSE: {"encode": [[id, ...], ...],
//            "utf8_hex": [{"repaired_hex": hex, "ids": [id, ...]}, ...],
//            "decode": [text, ...], "decode_skip_special": [text, ...]}
"use strict";
const fs = require("fs");
const { Tokenizer } = require("@anush008/tokenizers");

async function encodeIds(tokenizer, text) {
  const encoding = await tokenizer.encode(text, null, { addSpecialTokens: false });
  return encoding.getIds();
}

async function main() {
  const [requestPath, responsePath] = process.argv.slice(2);
  if (!requestPath || !responsePath) throw new Error("usage: node encode.js REQUEST.json RESPONSE.json");
  const request = JSON.parse(fs.readFileSync(requestPath, "utf8"));
  const tokenizer = Tokenizer.fromFile(request.tokenizer);
  const response = { encode: [], utf8_hex: [], decode: [], decode_skip_special: [] };
  for (const text of request.encode || []) response.encode.push(await encodeIds(tokenizer, text));
  // JS strings are UTF-16: invalid UTF-8 can only reach the tokenizer after TextDecoder has
  // replaced it with U+FFFD, which is what a Python or JS caller of Hugging Face would do.
  const decoder = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
  for (const hex of request.utf8_hex || []) {
    const text = decoder.decode(Buffer.from(hex, "hex"));
    response.utf8_hex.push({ repaired_hex: Buffer.from(text, "utf8").toString("hex"), ids: await encodeIds(tokenizer, text) });
  }
  for (const ids of request.decode || []) {
    response.decode.push(await tokenizer.decode(ids, false));
    response.decode_skip_special.push(await tokenizer.decode(ids, true));
  }
  fs.writeFileSync(responsePath, JSON.stringify(response));
}

main().catch((error) => {
  console.error(`encode.js: ${error && error.stack ? error.stack : error}`);
  process.exit(1);
});
