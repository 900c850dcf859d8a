// A webhook receiver and Graph API client built on the maintained WhatsApp Cloud API SDK
// (whatsapp-api-js, installed by scripts/install-whatsapp-api-js.sh), as an independent check of
// clawgate-testkit's FakeWhatsApp: the SDK verifies (X-Hub-Signature-256, over its own \u-escaped
// form of the body) and parses the webhooks the fake sends, answers the GET handshake, and its
// own sends and uploads must be accepted by the fake. Graph requests are redirected from
// https://graph.facebook.com to the fake through the SDK's fetch ponyfill.
//
//   node whatsapp-sdk-peer.mjs <sdk dir> <fake api root> <token> <app secret> <verify token> <api version>
//
// Prints `LISTENING <port>` once, then one line per event:
//   GET <status>                    a verification request and what it answered
//   MESSAGE <from> <text>           a verified message (then replies "sdk: <text>" through the SDK)
//   STATUS <id> <status>            a verified status
//   REFUSED <error name>            a POST the SDK refused (answered 401)
//   SENT <wamid> | SEND_FAILED <json>   the reply's outcome
//   UPLOADED <media id> | UPLOAD_FAILED <json>   after a message "/upload": a PNG uploaded with the SDK
import http from "node:http";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [sdkDir, apiRoot, token, appSecret, verifyToken, v] = process.argv.slice(2);
const sdk = await import(pathToFileURL(path.join(sdkDir, "node_modules/whatsapp-api-js/lib/index.js")).href);
const { Text } = await import(pathToFileURL(path.join(sdkDir, "node_modules/whatsapp-api-js/lib/messages/text.js")).href);
const WhatsAppAPI = sdk.WhatsAppAPI ?? sdk.default;

const redirect = (url, init) => fetch(String(url).replace("https://graph.facebook.com", apiRoot), init);
const wa = new WhatsAppAPI({ token, appSecret, webhookVerifyToken: verifyToken, v, ponyfill: { fetch: redirect } });
const say = (line) => process.stdout.write(line + "\n");

// A 1×1 PNG.
const PNG = Buffer.from(
  "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de0000000c4944415408d763f8cfc000000301010018dd8db00000000049454e44ae426082",
  "hex",
);

wa.on.message = async ({ phoneID, from, message, reply }) => {
  const text = message.text?.body ?? "";
  say(`MESSAGE ${from} ${JSON.stringify(text)}`);
  if (text === "/upload") {
    const form = new FormData();
    form.append("messaging_product", "whatsapp");
    form.append("file", new Blob([PNG], { type: "image/png" }), "dot.png");
    try {
      const r = await wa.uploadMedia(phoneID, form);
      say(r.id ? `UPLOADED ${r.id}` : `UPLOAD_FAILED ${JSON.stringify(r)}`);
    } catch (e) {
      say(`UPLOAD_FAILED ${JSON.stringify(String(e))}`);
    }
    return;
  }
  try {
    const r = await reply(new Text(`sdk: ${text}`));
    const id = r?.messages?.[0]?.id;
    say(id ? `SENT ${id}` : `SEND_FAILED ${JSON.stringify(r)}`);
  } catch (e) {
    say(`SEND_FAILED ${JSON.stringify(String(e))}`);
  }
};
wa.on.status = ({ id, status }) => say(`STATUS ${id} ${status}`);

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, "http://localhost");
  if (req.method === "GET") {
    try {
      const challenge = wa.get(Object.fromEntries(url.searchParams));
      say("GET 200");
      res.writeHead(200, { "content-type": "text/plain" }).end(challenge);
    } catch (e) {
      say(`GET 403 ${e?.constructor?.name}`);
      res.writeHead(403).end();
    }
    return;
  }
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const raw = Buffer.concat(chunks).toString("utf8");
  try {
    await wa.post(JSON.parse(raw), raw, req.headers["x-hub-signature-256"]);
    res.writeHead(200).end();
  } catch (e) {
    say(`REFUSED ${e?.constructor?.name ?? e}`);
    res.writeHead(401).end();
  }
});
server.listen(0, "127.0.0.1", () => say(`LISTENING ${server.address().port}`));
