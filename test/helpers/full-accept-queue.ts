// A listener whose accept queue is full: a connect to it neither completes nor fails (its SYN is
// dropped and retried, about 1 s, then 3 s later …). A backend that hangs on connect, or that
// connects late when release() makes room.
import { spawn } from 'node:child_process';
import net from 'node:net';
import type { TestContext } from 'node:test';
import { sleep } from './common.js';
import { startProxy, type Proxy } from './proxy.js';
import { startRedis, type RedisServer } from './redis.js';
import { PYTHON } from './strict-client.js';

export interface FullAcceptQueue {
  port: number;
  /** Start accepting: the next retry of a waiting connect completes (relayed, with relayTo). */
  release(): void;
  close(): void;
}

/**
 * A listen(0) socket filled by two connections that are never accepted. After release() every
 * connection is accepted and, when relayTo is given, relayed to 127.0.0.1:relayTo both ways,
 * FIN included; without it, accepted and left alone.
 */
export async function fullAcceptQueue(relayTo?: number): Promise<FullAcceptQueue> {
  const script = [
    'import socket,sys,threading',
    `to=${relayTo ?? 'None'}`,
    'def pipe(a,b):',
    '  try:',
    '    while True:',
    '      d=a.recv(65536)',
    '      if not d: break',
    '      b.sendall(d)',
    '  except OSError: pass',
    '  try: b.shutdown(socket.SHUT_WR)',
    '  except OSError: pass',
    'def relay(c):',
    '  r=socket.create_connection(("127.0.0.1",to))',
    '  threading.Thread(target=pipe,args=(c,r),daemon=True).start()',
    '  pipe(r,c)',
    's=socket.socket()',
    's.bind(("127.0.0.1",0))',
    's.listen(0)',
    'print(s.getsockname()[1],flush=True)',
    'if not sys.stdin.readline(): sys.exit()',
    's.listen(128)', // room for every waiting connect's next SYN (a second listen() resizes the queue)
    'held=[]',
    'while True:',
    '  c,_=s.accept()',
    '  if to is None: held.append(c)',
    '  else: threading.Thread(target=relay,args=(c,),daemon=True).start()',
  ].join('\n');
  const py = spawn(PYTHON, ['-c', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    py.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
    py.once('exit', (code) => reject(new Error(`python exited ${code}`)));
  });
  const fillers = [0, 1].map(() => net.connect({ host: '127.0.0.1', port }).on('error', () => undefined));
  await sleep(200);
  return {
    port,
    release: () => py.stdin.write('go\n'),
    close: () => {
      for (const f of fillers) f.destroy();
      py.stdin.end();
      py.kill();
    },
  };
}

/**
 * A redis-server, a full accept queue relaying to it, and a proxy whose backend is that door (its
 * connects hang until door.release()), all stopped after the test.
 */
export async function proxyBehindDoor(t: TestContext, timeouts: { connectMs: number; drainMs: number }): Promise<{ redis: RedisServer; door: FullAcceptQueue; proxy: Proxy }> {
  const redis = await startRedis();
  t.after(() => redis.stop());
  const door = await fullAcceptQueue(redis.port);
  t.after(() => door.close());
  const proxy = await startProxy({ backend: { host: '127.0.0.1', port: door.port, connect_timeout_ms: timeouts.connectMs }, close: { drain_timeout_ms: timeouts.drainMs } });
  t.after(() => proxy.stop());
  return { redis, door, proxy };
}
