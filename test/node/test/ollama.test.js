// The official Ollama JavaScript client against a sovra node's /api routes.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { Ollama } from 'ollama';

import { baseURL, token, chatModel, embedModel, expectTools, maxTokens, sameModel, thinkModel, toolsModel, toolsPrompt } from './env.js';

const ollama = new Ollama({ host: baseURL, headers: { Authorization: `Bearer ${token}` } });

const hello = [{ role: 'user', content: 'Say hello in one short sentence.' }];
const options = { num_predict: maxTokens };

const weatherTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather in a city.',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string', description: 'City name' } },
      required: ['city'],
    },
  },
};

function assertCounts(r, what) {
  assert.ok(Number.isInteger(r.prompt_eval_count) && r.prompt_eval_count > 0, `${what}: prompt_eval_count ${r.prompt_eval_count}`);
  assert.ok(Number.isInteger(r.eval_count) && r.eval_count > 0, `${what}: eval_count ${r.eval_count}`);
  assert.ok(r.eval_count <= maxTokens, `${what}: eval_count ${r.eval_count} > num_predict ${maxTokens}`);
  assert.ok(Number.isInteger(r.total_duration) && r.total_duration > 0, `${what}: total_duration ${r.total_duration}`);
  assert.ok(['stop', 'length'].includes(r.done_reason), `${what}: done_reason ${r.done_reason}`);
}

// The tests of a file run in order: ps runs after the chats loaded the model.
describe('Ollama client', () => {
  it('reports the version', async () => {
    const v = await ollama.version();
    assert.equal(typeof v.version, 'string');
    assert.match(v.version, /^\d+\.\d+\.\d+/);
  });

  it('lists the models (tags)', async () => {
    const r = await ollama.list();
    assert.ok(Array.isArray(r.models), JSON.stringify(r));
    const names = r.models.map((m) => m.name);
    for (const want of [chatModel, embedModel]) {
      const m = r.models.find((m) => sameModel(m.name, want));
      assert.ok(m, `${want} not in ${JSON.stringify(names)}`);
      assert.ok(sameModel(m.model, want), `model ${m.model}`);
      assert.ok(m.size > 0, `${want}: size ${m.size}`);
      assert.match(m.digest, /^[0-9a-f]{64}$/, `${want}: digest ${m.digest}`);
      assert.equal(typeof m.details?.family, 'string', `${want}: details ${JSON.stringify(m.details)}`);
      assert.ok(!Number.isNaN(Date.parse(m.modified_at)), `${want}: modified_at ${m.modified_at}`);
    }
  });

  it('shows a model', async () => {
    const r = await ollama.show({ model: chatModel });
    assert.ok(Array.isArray(r.capabilities), JSON.stringify(r.capabilities));
    assert.ok(r.capabilities.includes('completion'), `capabilities ${r.capabilities}`);
    assert.equal(typeof r.template, 'string');
    assert.ok(r.template.length > 0, 'empty template');
    assert.equal(typeof r.details?.family, 'string');
    assert.equal(typeof r.model_info, 'object');
    assert.ok(Object.keys(r.model_info).length > 0, 'empty model_info');
    assert.equal(typeof r.model_info['general.architecture'], 'string');
  });

  it('chats without streaming', async () => {
    const r = await ollama.chat({ model: chatModel, messages: hello, stream: false, options });
    assert.ok(sameModel(r.model, chatModel), `model ${r.model}`);
    assert.equal(r.done, true);
    assert.equal(r.message.role, 'assistant');
    assert.equal(typeof r.message.content, 'string');
    assert.ok(r.message.content.length > 0, 'empty content');
    assertCounts(r, 'chat');
  });

  it('chats with streaming', async () => {
    const stream = await ollama.chat({ model: chatModel, messages: hello, stream: true, options });
    const parts = [];
    for await (const part of stream) parts.push(part);
    assert.ok(parts.length >= 2, `only ${parts.length} parts`);
    const last = parts.at(-1);
    assert.equal(last.done, true);
    for (const p of parts.slice(0, -1)) assert.equal(p.done, false);
    const content = parts.map((p) => p.message.content).join('');
    assert.ok(content.length > 0, 'the streamed content is empty');
    assertCounts(last, 'streamed chat');
  });

  it('generates without streaming', async () => {
    const r = await ollama.generate({ model: chatModel, prompt: 'Once upon a time', stream: false, options });
    assert.ok(sameModel(r.model, chatModel), `model ${r.model}`);
    assert.equal(r.done, true);
    assert.equal(typeof r.response, 'string');
    assert.ok(r.response.length > 0, 'empty response');
    assertCounts(r, 'generate');
  });

  it('generates with streaming', async () => {
    const stream = await ollama.generate({ model: chatModel, prompt: 'Once upon a time', stream: true, options });
    const parts = [];
    for await (const part of stream) parts.push(part);
    assert.ok(parts.length >= 2, `only ${parts.length} parts`);
    const last = parts.at(-1);
    assert.equal(last.done, true);
    assert.ok(parts.map((p) => p.response).join('').length > 0, 'the streamed response is empty');
    assertCounts(last, 'streamed generate');
  });

  it('embeds', async () => {
    const r = await ollama.embed({ model: embedModel, input: ['The quick brown fox', 'jumps over the lazy dog'] });
    assert.ok(sameModel(r.model, embedModel), `model ${r.model}`);
    assert.equal(r.embeddings.length, 2);
    for (const v of r.embeddings) {
      assert.ok(v.length > 0, 'empty embedding');
      assert.ok(
        v.every((x) => typeof x === 'number' && Number.isFinite(x)),
        'non-numeric element',
      );
    }
    assert.equal(r.embeddings[0].length, r.embeddings[1].length, 'dimensions differ');
    assert.notDeepEqual(r.embeddings[0], r.embeddings[1], 'different inputs, same vector');
    assert.ok(r.prompt_eval_count > 0, `prompt_eval_count ${r.prompt_eval_count}`);
  });

  it('lists the running models (ps)', async () => {
    const r = await ollama.ps();
    assert.ok(Array.isArray(r.models), JSON.stringify(r));
    const m = r.models.find((m) => sameModel(m.name, chatModel));
    assert.ok(m, `${chatModel} is not running after the chats: ${JSON.stringify(r.models.map((m) => m.name))}`);
    assert.ok(m.size > 0, `size ${m.size}`);
    assert.ok(Number.isInteger(m.size_vram), `size_vram ${m.size_vram}`);
    assert.ok(!Number.isNaN(Date.parse(m.expires_at)), `expires_at ${m.expires_at}`);
  });

  it('rejects an unknown model with 404', async () => {
    await assert.rejects(
      ollama.chat({ model: 'no-such-model:1b', messages: hello, stream: false }),
      (err) => {
        assert.equal(err.name, 'ResponseError', `got ${err?.name}: ${err?.message}`);
        assert.equal(err.status_code, 404);
        assert.ok(err.error.length > 0, 'empty error message');
        return true;
      },
    );
  });

  it('thinks', { skip: thinkModel ? false : 'SOVRA_THINK_MODEL is not set' }, async () => {
    const r = await ollama.chat({
      model: thinkModel,
      messages: [{ role: 'user', content: 'Why is the sky blue?' }],
      think: true,
      stream: false,
    });
    assert.equal(typeof r.message.thinking, 'string', JSON.stringify(r.message));
    assert.ok(r.message.thinking.length > 0, 'empty thinking');
    assert.ok(r.message.content.length > 0, 'empty content');
  });

  it('calls a tool', { skip: expectTools ? false : 'SOVRA_EXPECT_TOOLS is not 1' }, async () => {
    const r = await ollama.chat({
      model: toolsModel,
      messages: [{ role: 'user', content: toolsPrompt }],
      tools: [weatherTool],
      stream: false,
    });
    const calls = r.message.tool_calls;
    assert.ok(Array.isArray(calls) && calls.length === 1, JSON.stringify(r.message));
    assert.equal(calls[0].function.name, 'get_weather');
    assert.equal(typeof calls[0].function.arguments, 'object');
    assert.equal(typeof calls[0].function.arguments.city, 'string');
  });
});
