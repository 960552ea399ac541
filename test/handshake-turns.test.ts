/**
 * New TLS handshakes one per event-loop turn: the connections of a burst that share one leaf
 * resume together, and their handshakes must not run back to back in one turn while other
 * clients' I/O waits (see proxy/tls/handshake-turns.ts).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { HandshakeTurns } from "../src/proxy/tls/handshake-turns.js";

test("waiters are admitted in order, each in an event-loop turn of its own, with I/O served between them", async () => {
  const turns = new HandshakeTurns();
  // A socket pair on 127.0.0.1: a byte written before each admission is read by the poll phase
  // between two admissions, not after all of them.
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const accepted = new Promise<net.Socket>((resolve) => server.once("connection", resolve));
  const client = net.connect((server.address() as net.AddressInfo).port, "127.0.0.1");
  const peer = await accepted;
  let bytesRead = 0;
  peer.on("data", (chunk: Buffer) => (bytesRead += chunk.length));
  await new Promise((resolve) => setTimeout(resolve, 20));
  try {
    const seen: { i: number; bytesRead: number }[] = [];
    const admitted = Array.from({ length: 5 }, (_, i) =>
      turns.next().then(() => {
        seen.push({ i, bytesRead });
        client.write("x"); // read by the next poll phase, before the next admission
      }),
    );
    await Promise.all(admitted);
    assert.deepEqual(seen.map((s) => s.i), [0, 1, 2, 3, 4], "first come, first admitted");
    for (let k = 1; k < seen.length; k++) {
      assert.ok(seen[k]!.bytesRead > seen[k - 1]!.bytesRead, `admission ${k} came after the I/O written at admission ${k - 1}: ${JSON.stringify(seen)}`);
    }
    // Once none waits, the next is admitted alone, in the next turn.
    let alone = false;
    const lone = turns.next().then(() => (alone = true));
    assert.equal(alone, false, "not synchronously");
    await lone;
  } finally {
    client.destroy();
    peer.destroy();
    server.close();
  }
});
