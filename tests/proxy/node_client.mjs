// The official Node `openai` package through the proxy (tests/proxy/test_proxy.py installs it beside this file).
//   node node_client.mjs sdk PROXY_BASE_URL KEY    SDK calls, non-streaming then streaming: what the SDK saw, as JSON
//   node node_client.mjs raw PROXY_BASE_URL KEY SIM_ROOT
//        the same request straight to the simulator and through the proxy (the simulator reset before each),
//        non-streaming then streaming: the bytes of each answer, base64, as JSON
import OpenAI from "openai";

const [mode, proxyBase, key, simRoot] = process.argv.slice(2);
const messages = [{ role: "user", content: "Say hello" }];
const out = {};

if (mode === "sdk") {
  const client = new OpenAI({ baseURL: proxyBase, apiKey: key, maxRetries: 0 });
  const answer = await client.chat.completions.create({ model: "gemini-3.1-pro", messages, stream: false });
  out.non_stream = { id: answer.id, usage: answer.usage, content: answer.choices[0].message.content };
  const stream = await client.chat.completions.create({
    model: "gemini-3.1-pro", messages, stream: true, stream_options: { include_usage: true },
  });
  let id, usage, content = "";
  for await (const chunk of stream) {
    id = chunk.id;
    if (chunk.usage) usage = chunk.usage;
    content += chunk.choices[0]?.delta?.content ?? "";
  }
  out.stream = { id, usage, content };
} else {
  const post = async (base, body) => {
    const response = await fetch(`${base}/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    return { status: response.status, body: Buffer.from(await response.arrayBuffer()).toString("base64") };
  };
  for (const stream of [false, true]) {
    const body = { model: "gemini-3.1-pro", messages, stream };
    await fetch(`${simRoot}/sim/reset`, { method: "POST" });
    const direct = await post(`${simRoot}/v1`, body);
    await fetch(`${simRoot}/sim/reset`, { method: "POST" });
    const proxied = await post(proxyBase, body);
    out[stream ? "stream" : "non_stream"] = { direct, proxied };
  }
}
console.log(JSON.stringify(out));
