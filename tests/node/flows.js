// The etcd3 npm client's main features, one after another, against the
// endpoint given as the first argument. Each step prints one line of JSON;
// nothing printed depends on ids the server picks (lease ids, lock keys),
// so the output of two servers given the same calls can be compared.
'use strict';
const { Etcd3 } = require('etcd3');

const endpoint = process.argv[2];
const client = new Etcd3({ hosts: endpoint });
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const say = (step, value) => console.log(JSON.stringify({ step, value }));
const errorName = async (promise) => {
  try {
    await promise;
    return 'no error';
  } catch (e) {
    return `${e.constructor.name}: ${e.message}`;
  }
};

async function kv() {
  await client.put('fruit/apple').value('red');
  await client.put('fruit/banana').value('yellow');
  const previous = await client.put('fruit/apple').value('green').getPrevious();
  say('put returns the previous value', previous.value.toString());
  say('get', await client.get('fruit/apple').string());
  say('get missing', await client.get('fruit/cherry').string());
  say('prefix', await client.getAll().prefix('fruit/').strings());
  say('count', await client.getAll().prefix('fruit/').count());
  say('keys', await client.getAll().prefix('fruit/').sort('Key', 'Descend').keys());
  const versions = (await client.get('fruit/apple').exec()).kvs.map((kv) => [
    kv.version,
    kv.create_revision,
    kv.mod_revision,
  ]);
  say('version, create and mod revision', versions);
  say('delete', (await client.delete().key('fruit/banana').exec()).deleted);
  say('after delete', await client.getAll().prefix('fruit/').keys());
}

async function txn() {
  const matched = await client
    .if('fruit/apple', 'Value', '==', 'green')
    .then(client.put('fruit/apple').value('ripe'))
    .else(client.get('fruit/apple'))
    .commit();
  say('txn that matches', matched.succeeded);
  const missed = await client
    .if('fruit/apple', 'Version', '>', 100)
    .then(client.put('fruit/apple').value('never'))
    .else(client.get('fruit/apple'))
    .commit();
  say('txn that misses', [missed.succeeded, missed.responses[0].response_range.kvs[0].value.toString()]);
}

async function leases() {
  const lease = client.lease(30, { autoKeepAlive: false });
  await lease.put('leased/one').value('1');
  await lease.put('leased/two').value('2');
  const id = await lease.grant();
  const live = await client.leaseClient.leaseTimeToLive({ ID: id, keys: true });
  say('keys on the lease', live.keys.map(String).sort());
  say('ttl within the grant', Number(live.TTL) > 0 && Number(live.TTL) <= 30 && live.grantedTTL);
  const renewed = await lease.keepaliveOnce();
  say('keep-alive renews to the grant', renewed.TTL);
  await lease.revoke();
  say('revoke deletes the keys', await client.getAll().prefix('leased/').keys());
}

async function watch() {
  const seen = [];
  const watcher = await client.watch().prefix('watched/').create();
  watcher.on('put', (kv) => seen.push(['put', kv.key.toString(), kv.value.toString()]));
  watcher.on('delete', (kv) => seen.push(['delete', kv.key.toString()]));
  await client.put('watched/a').value('1');
  await client.put('watched/b').value('2');
  await client.delete().key('watched/a');
  for (let i = 0; i < 100 && seen.length < 3; i++) await sleep(50);
  await watcher.cancel();
  say('watch events', seen);
}

async function locks() {
  const first = client.lock('mutex').ttl(10);
  await first.acquire();
  say('second lock while held', await errorName(client.lock('mutex').ttl(10).acquire()));
  await first.release();
  const second = client.lock('mutex').ttl(10);
  await second.acquire();
  say('second lock after release', 'acquired');
  await second.release();
}

async function elections() {
  const election = client.election('boss', 10);
  const first = election.campaign('alpha');
  await first.wait();
  const observer = await election.observe();
  const changes = [];
  observer.on('change', (leader) => changes.push(leader));
  say('leader', await election.leader());
  const second = election.campaign('beta');
  await sleep(200);
  say('leader while the first holds', await election.leader());
  await first.resign();
  await second.wait();
  say('leader after the first resigns', await election.leader());
  await second.proclaim('gamma');
  for (let i = 0; i < 100 && !changes.includes('gamma'); i++) await sleep(50);
  say('observed changes', changes);
  await second.resign();
  observer.cancel();
}

async function stm() {
  await client.put('counter').value('0');
  const bump = () =>
    client.stm().transact(async (tx) => {
      const value = Number(await tx.get('counter').string());
      return tx.put('counter').value(String(value + 1));
    });
  await Promise.all([bump(), bump(), bump(), bump()]);
  say('four concurrent increments', await client.get('counter').string());
}

async function auth() {
  await client.role('reader').create();
  await client.role('reader').grant({
    permission: 'Read',
    range: client.range({ prefix: 'fruit/' }),
  });
  await client.user('ann').create('secret');
  await client.user('ann').addRole('reader');
  await client.role('root').create();
  await client.user('root').create('rootpw');
  await client.user('root').addRole('root');
  say('users', (await client.getUsers()).map((u) => u.name).sort());
  say('roles', (await client.getRoles()).map((r) => r.name).sort());
  say(
    'permissions',
    (await client.role('reader').permissions()).map((p) => [p.permission, p.range.start.toString(), p.range.end.toString()])
  );
  say('ann roles', (await client.user('ann').roles()).map((r) => r.name));
  say('duplicate user', await errorName(client.user('ann').create('again')));
  await client.auth.authEnable();
  const ann = new Etcd3({ hosts: endpoint, auth: { username: 'ann', password: 'secret' } });
  say('ann reads', await ann.get('fruit/apple').string());
  say('ann writes', await errorName(ann.put('fruit/apple').value('mine')));
  say('ann reads outside', await errorName(ann.get('counter').string()));
  const wrong = new Etcd3({ hosts: endpoint, auth: { username: 'ann', password: 'wrong' } });
  say('wrong password', await errorName(wrong.get('fruit/apple').string()));
  say('no credentials', await errorName(client.get('fruit/apple').string()));
  const root = new Etcd3({ hosts: endpoint, auth: { username: 'root', password: 'rootpw' } });
  await root.auth.authDisable();
  say('after disable', await client.get('fruit/apple').string());
  ann.close();
  wrong.close();
  root.close();
}

(async () => {
  for (const flow of [kv, txn, leases, watch, locks, elections, stm, auth]) {
    await flow();
  }
  client.close();
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
