// The official openai npm client (a client no one here wrote) against embcache's OpenAI-compatible endpoint.
// Run by tests/EmbeddingCache.FunctionalTests/OpenAiEndpointTests.cs, which starts the server and writes what Embed
// gave over gRPC for the same texts into $EMBCACHE_EXPECTED:
//   {"model", "documents": {"texts", "vectors": [base64 of float32 LE per text]}, "queries": {...}}
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import OpenAI, { AuthenticationError, BadRequestError, NotFoundError } from 'openai';

const expected = JSON.parse(readFileSync(process.env.EMBCACHE_EXPECTED, 'utf8'));
const baseURL = process.env.EMBCACHE_OPENAI_URL;
// No retries: a refusal must surface at once, as the error class it maps to.
const client = new OpenAI({ baseURL, apiKey: process.env.EMBCACHE_API_KEY, maxRetries: 0 });

const floats = (base64) => Array.from(new Float32Array(new Uint8Array(Buffer.from(base64, 'base64')).buffer));
const expectedVectors = (kind) => expected[kind].vectors.map(floats);

function assertSameVectors(data, vectors) {
  assert.equal(data.length, vectors.length);
  data.forEach((item, i) => {
    assert.equal(item.object, 'embedding');
    assert.equal(item.index, i);
    // Exact: every float32 of the reply equals the one Embed gave.
    assert.deepEqual(Array.from(item.embedding, Math.fround), vectors[i]);
  });
}

test('the default request (base64, decoded by the client) gives the vectors Embed gives', async () => {
  const reply = await client.embeddings.create({ model: expected.model, input: expected.documents.texts });
  assert.equal(reply.object, 'list');
  assert.equal(reply.model, expected.model);
  assert.equal(typeof reply.usage.prompt_tokens, 'number');
  assert.equal(typeof reply.usage.total_tokens, 'number');
  assertSameVectors(reply.data, expectedVectors('documents'));
});

test('encoding_format float gives the same vectors as JSON numbers', async () => {
  const reply = await client.embeddings.create({ model: expected.model, input: expected.documents.texts, encoding_format: 'float' });
  assert.ok(Array.isArray(reply.data[0].embedding));
  assertSameVectors(reply.data, expectedVectors('documents'));
});

test('encoding_format base64 gives little-endian float32 bytes in base64', async () => {
  const reply = await client.embeddings.create({ model: expected.model, input: expected.documents.texts, encoding_format: 'base64' });
  assert.deepEqual(reply.data.map((item) => item.embedding), expected.documents.vectors);
});

test('input_type query gives query vectors; a single string gives one embedding', async () => {
  const reply = await client.embeddings.create({ model: expected.model, input: expected.queries.texts, input_type: 'query' });
  assertSameVectors(reply.data, expectedVectors('queries'));
  const one = await client.embeddings.create({ model: expected.model, input: expected.queries.texts[0], input_type: 'query' });
  assertSameVectors(one.data, expectedVectors('queries').slice(0, 1));
});

test('models.list names the built-in model', async () => {
  const ids = [];
  for await (const model of client.models.list()) ids.push(model.id);
  assert.ok(ids.includes(expected.model), `models: ${ids}`);
});

test('an unknown model is NotFoundError with the server message', async () => {
  await assert.rejects(client.embeddings.create({ model: 'no-such-model', input: 'x' }), (error) => {
    assert.ok(error instanceof NotFoundError, `${error}`);
    assert.equal(error.status, 404);
    assert.equal(error.code, 'model_not_found');
    assert.match(error.message, /unknown model 'no-such-model'/);
    return true;
  });
});

test('token ids, an unknown encoding_format and other dimensions are BadRequestError naming the parameter', async () => {
  const cases = [
    [{ input: [[101, 2023]] }, 'input', /token ids is not supported/],
    [{ input: 'x', encoding_format: 'int8' }, 'encoding_format', /must be one of "float", "base64"/],
    [{ input: 'x', dimensions: 128 }, 'dimensions', /makes 384-dimensional vectors/],
  ];
  for (const [body, param, message] of cases) {
    await assert.rejects(client.embeddings.create({ model: expected.model, ...body }), (error) => {
      assert.ok(error instanceof BadRequestError, `${JSON.stringify(body)}: ${error}`);
      assert.equal(error.param, param);
      assert.match(error.message, message);
      return true;
    });
  }
});

test('a wrong API key is AuthenticationError', async () => {
  const stranger = new OpenAI({ baseURL, apiKey: 'not-the-key', maxRetries: 0 });
  await assert.rejects(stranger.embeddings.create({ model: expected.model, input: 'x' }), (error) => {
    assert.ok(error instanceof AuthenticationError, `${error}`);
    assert.equal(error.status, 401);
    assert.match(error.message, /requires an API key/);
    return true;
  });
});
