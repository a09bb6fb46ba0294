// Settings of the SDK checks, read from the environment. The Go test
// internal/e2e.TestNodeSDKs sets them for each backend it starts; they can
// also be set by hand to check any running node.

function required(name) {
  const v = process.env[name];
  if (!v) {
    throw new Error(`${name} is not set: point the SDK checks at a sovra node (see test/node/README.md)`);
  }
  return v;
}

/** Base URL of the sovra node, without a trailing slash or /v1. */
export const baseURL = required('SOVRA_URL').replace(/\/+$/, '');

/** The node's management token (or an API key), sent as a bearer token. */
export const token = required('SOVRA_TOKEN');

/** A chat model the node serves. */
export const chatModel = required('SOVRA_CHAT_MODEL');

/** An embedding model the node serves. */
export const embedModel = required('SOVRA_EMBED_MODEL');

/** A reasoning model; the thinking checks are skipped when unset. */
export const thinkModel = process.env.SOVRA_THINK_MODEL || '';

/**
 * Whether the backend answers a tool request with a tool call. A model
 * with random weights cannot, so the tool-call checks run only when this
 * is "1".
 */
export const expectTools = process.env.SOVRA_EXPECT_TOOLS === '1';

/** The model the tool-call checks use (default: the chat model). */
export const toolsModel = process.env.SOVRA_TOOLS_MODEL || chatModel;

/**
 * Whether the tools model answers a tool result with text. A scripted
 * model that always calls its tool cannot, so "0" skips that check.
 */
export const toolsFollowUp = process.env.SOVRA_TOOLS_FOLLOWUP !== '0';

/** The user message that makes the backend call the tool. */
export const toolsPrompt =
  process.env.SOVRA_TOOLS_PROMPT || 'What is the weather in Paris? Use the get_weather tool.';

/** Largest number of tokens each generation asks for. */
export const maxTokens = Number(process.env.SOVRA_MAX_TOKENS || 16);

/** Names Ollama treats as the same model: "x" and "x:latest". */
export function sameModel(a, b) {
  const norm = (s) => (s.includes(':') ? s : `${s}:latest`);
  return norm(a) === norm(b);
}
