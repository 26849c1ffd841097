import assert from 'node:assert/strict';
import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { parseTable, procAddress, unacknowledged } from '../../src/proxy/send-queue.js';

describe('send-queue: the kernel\'s unacknowledged bytes of a socket (/proc/net/tcp, tcp6)', () => {
  it('writes addresses as the kernel prints them (each 32-bit word in host order)', () => {
    assert.equal(procAddress('127.0.0.1', false, true), '0100007F');
    assert.equal(procAddress('10.1.2.3', false, false), '0A010203');
    assert.equal(procAddress('::1', true, true), '00000000000000000000000001000000');
    assert.equal(procAddress('::ffff:127.0.0.1', true, true), '0000000000000000FFFF00000100007F');
    assert.equal(procAddress('fe80::1:2%eth0', true, true), '000080FE000000000000000002000100');
    assert.equal(procAddress('::1.2.3.4', true, false), '00000000000000000000000001020304');
    assert.equal(procAddress('1::2::3', true, true), null);
    assert.equal(procAddress('256.0.0.1', false, true), null);
    assert.equal(procAddress('localhost', false, true), null);
  });

  it('reads tx_queue per connection, without the listening sockets and TIME_WAIT ghosts', () => {
    const table = parseTable([
      '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
      '   0: 0100007F:18EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0',
      '   1: 0100007F:18EB 0100007F:D431 01 0003A980:00000000 01:00000014 00000000     0        0 2 1 0 20 4 30 10 -1',
      '   2: 0100007F:18EB 0100007F:D432 06 00000000:00000000 03:00000F2A 00000000     0        0 0 3 0',
    ].join('\n'));
    assert.deepEqual([...table], [['0100007F:18EB 0100007F:D431', 0x3a980]]);
  });

  it('reads the columns at their fixed places, IPv4 and IPv6; only the rows of one local port when asked', () => {
    const v6local = '0000000000000000FFFF00000100007F';
    const text = [
      '  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
      `   0: ${v6local}:18EB ${v6local}:D431 01 00000010:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1`,
      `   1: ${v6local}:D431 ${v6local}:18EB 01 00000020:00000000 00:00000000 00000000     0        0 3 1 0 20 4 30 10 -1`,
      `10000: ${v6local}:18EB ${v6local}:D432 01 00000030:00000000 00:00000000 00000000     0        0 4 1 0 20 4 30 10 -1`,
      '',
    ].join('\n');
    assert.deepEqual([...parseTable(text)].length, 3);
    assert.deepEqual([...parseTable(text, '18EB')], [[`${v6local}:18EB ${v6local}:D431`, 0x10], [`${v6local}:18EB ${v6local}:D432`, 0x30]]);
  });

  it('finds a real connection: bytes its peer does not read are counted', { skip: process.platform !== 'linux' }, async () => {
    const server = net.createServer({ pauseOnConnect: true }); // the peer never reads
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const client = net.connect((server.address() as AddressInfo).port, '127.0.0.1');
    await once(client, 'connect');
    try {
      assert.equal(await unacknowledged(client), 0);
      client.write(Buffer.alloc(8 << 20)); // more than both buffers hold
      let queued = 0;
      for (let i = 0; i < 50 && queued === 0; i++) {
        await new Promise((r) => setTimeout(r, 250)); // past the shared table's 200 ms
        queued = (await unacknowledged(client)) ?? -1;
      }
      assert.ok(queued > 0, `unacknowledged: ${queued}`);
    } finally {
      client.destroy();
      server.close();
    }
  });
});
