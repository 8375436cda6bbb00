// Renders a benchmark report (the object run.js writes as JSON) as markdown.

const f = (x, d = 2) => (x === null || x === undefined ? '–' : Number(x).toFixed(d));
const int = (x) => (x === null || x === undefined ? '–' : Math.round(x).toLocaleString('en-US'));

/** Older reports named autocannon in full; newer ones say `wrk` or `autocannon`. */
function loadGenerator(s) {
  if (s.loadGenerator === 'wrk') return 'wrk (one thread, in its own process)';
  return 'autocannon in its own process';
}

export function renderMarkdown(r) {
  const s = r.settings;
  const m = r.machine;
  const lines = [];
  lines.push(`# Portcullis benchmark — ${r.date.slice(0, 10)}`, '');
  lines.push(`Machine: ${m.nproc} × ${m.cpu}, ${m.os}, Node ${m.node}; load average at start ${m.loadavg.join(' ')}; commit ${m.commit}.`);
  if (r.targets.length) lines.push(
    `Load: ${loadGenerator(s)}, ${s.connections} connections, pipelining ${s.pipelining}, ${s.duration} s per sample after a discarded ${s.loadGenerator === 'wrk' ? Math.max(1, Math.round(s.warmup)) : s.warmup} s warm-up` +
      ((s.slices ?? 1) > 1 ? `, taken in ${s.slices} slices with every other target's in turn (order reversed each pass); ` : '; ') +
      `${s.rounds} interleaved rounds, medians shown; ratios are taken within each round against the bare proxy, then the median. ` +
      (s.restart ? 'Every Portcullis gateway was started afresh (and warmed) before each round. ' : '') +
      `Gateway log level ${s.logLevel} (one JSON line per request to a file), upstream leg ${s.upstreamLeg ?? `http-proxy-3 ${s.proxyPath}`}. Whole run: ${r.elapsedSeconds} s.`,
    '',
  );
  else lines.push(`The memory scenario only (\`--memory-only\`); gateway log level ${s.logLevel}. Whole run: ${r.elapsedSeconds} s.`, '');
  if (r.targets.length) {
    lines.push('| target | req/s | × bare proxy | (rounds) | p50 ms | p99 ms | p99 × bare proxy | server CPU µs/req |', '| --- | ---: | ---: | :---: | ---: | ---: | ---: | ---: |');
    for (const t of r.targets) {
      const per = t.vsBare.rpsPerRound.filter((x) => x !== null);
      const range = t.name === 'bare-proxy' || per.length === 0 ? '' : `${f(Math.min(...per))}–${f(Math.max(...per))}`;
      lines.push(`| ${t.label} | ${int(t.median.rps)} | ${f(t.vsBare.rps)} | ${range} | ${f(t.median.p50)} | ${f(t.median.p99)} | ${f(t.vsBare.p99)} | ${int(t.median.cpuUsPerReq)} |`);
    }
    lines.push('', 'Server CPU µs/req: user+system CPU time of the process under test (gateway, proxy or upstream) divided by the requests answered; it does not include the upstream behind a proxy.');
    lines.push('');
  }
  const ab = r.targets.filter((t) => t.vsBase);
  if (ab.length) {
    lines.push('A/B against the base build (same rounds; per-round ratios, median):', '', '| target | req/s × base | CPU/req × base | per-round CPU ratios |', '| --- | ---: | ---: | --- |');
    for (const t of ab) lines.push(`| ${t.label} | ${f(t.vsBase.rps)} | ${f(t.vsBase.cpu)} | ${t.vsBase.cpuPerRound.map((x) => f(x)).join(' ')} |`);
    lines.push('');
  }
  const pairs = r.targets.filter((t) => t.vsPair);
  if (pairs.length) {
    lines.push('Edge features against the same gateway without them (same rounds; per-round ratios, median):', '', '| target | against | req/s × | CPU/req × | p99 × | per-round req/s ratios |', '| --- | --- | ---: | ---: | ---: | --- |');
    for (const t of pairs) lines.push(`| ${t.label} | ${r.targets.find((x) => x.name === t.vsPair.of)?.label ?? t.vsPair.of} | ${f(t.vsPair.rps)} | ${f(t.vsPair.cpu)} | ${f(t.vsPair.p99)} | ${t.vsPair.rpsPerRound.map((x) => f(x)).join(' ')} |`);
    lines.push('');
  }
  if (r.goals.length) {
    lines.push('| goal | measured | in the rounds | met |', '| --- | ---: | ---: | :---: |');
    for (const g of r.goals) lines.push(`| ${g.goal} | ${f(g.measured)} | ${g.rounds === undefined ? '' : f(g.rounds)} | ${g.met === null ? '–' : g.met ? 'yes' : '**no**'} |`);
    lines.push('');
  }
  const sc = r.scenarios;
  if (sc.cycles) {
    const c = sc.cycles;
    lines.push(`**Goal cycles** (the goals' targets in turn, ${c.seconds} s each, the order reversed every cycle, ${c.cycles} cycles after the rounds; each ratio taken within a cycle, then the median; the bare proxy ran at ${int(c.bareRps.min)}–${int(c.bareRps.max)} req/s across them):`, '');
    lines.push('| target | req/s × bare proxy | p99 × bare proxy | CPU/req × bare proxy | req/s × fastify peer | per-cycle req/s × bare proxy |', '| --- | ---: | ---: | ---: | ---: | --- |');
    for (const [name, t] of Object.entries(c.targets)) {
      lines.push(`| ${r.targets.find((x) => x.name === name)?.label ?? name} | ${f(t.rps)} | ${f(t.p99)} | ${f(t.cpu)} | ${t.vsPeer === undefined ? '' : f(t.vsPeer)} | ${t.rpsPerCycle.map((x) => f(x)).join(' ')} |`);
    }
    lines.push('');
  }
  if (sc.flood) {
    const rounds = s.floodRounds ?? 1;
    lines.push(`**Flood of wrong secrets for a valid key id** (valid traffic from ${loadGenerator(s)}; the flood from a second process, autocannon, a fresh wrong secret with a valid checksum on every request, ${s.floodConnections} connections${rounds > 1 ? `; ${rounds} rounds, the order reversed every second one, medians; × alone is the median of each round's ratio` : ''}):`, '');
    lines.push('| valid-key traffic | valid req/s | × alone | (rounds) | valid p99 ms | flood req/s | flood answers |', '| --- | ---: | ---: | --- | ---: | ---: | --- |');
    lines.push(`| alone | ${int(sc.flood.validAlone.rps)} | 1.00 |  | ${f(sc.flood.validAlone.p99)} | – | – |`);
    for (const v of sc.flood.variants) {
      const codes = Object.entries(v.floodStatusCodes).map(([c, n]) => `${c}: ${int(n)}`).join(', ');
      lines.push(`| next to ${v.name} | ${int(v.validRps)} | ${f(v.ratio)} | ${(v.ratioPerRound ?? []).map((x) => f(x)).join(' ')} | ${f(v.validP99)} | ${int(v.floodRps)} | ${codes} |`);
    }
    lines.push('');
  }
  if (sc.limits) {
    const l = sc.limits;
    lines.push(
      (l.paired ? `**Rate limits on Redis**: the limited route (HS256 JWT, Redis revocation, a policy far above the load) against the same route without a limit, on one gateway, alternating every ${l.paired.seconds} s for ${l.paired.pairs} pairs: req/s **× ${f(l.paired.rps)}** (per pair ${l.paired.rpsPerPair.map((x) => f(x)).join(' ')}), CPU per request × ${f(l.paired.cpu)}. It ` : '**Rate limits on Redis**: the limited route (HS256 JWT, Redis revocation, a policy far above the load) ') +
        `ran at ${int(l.limitedRps)} req/s alone, with ${f(l.commandsPerRequest.evalsha, 3)} rate-limit script calls and ${f(l.commandsPerRequest.mget, 3)} revocation MGETs per request (INFO commandstats: one call serves every request of an event-loop turn). ` +
        `Fleet: ${l.fleet.instances} instances sharing one global policy of ${int(l.fleet.limit)} per ${l.fleet.windowSeconds} s, overloaded for ${l.fleet.seconds} s (${int(l.fleet.requests)} requests): ${int(l.fleet.admitted)} admitted of ${int(l.fleet.allowance)} allowed — **${f(l.accuracy, 3)}** of the allowance (never above 1; the sliding rule admits up to a tenth of a window late).`,
      '',
    );
  }
  if (sc.memory) {
    const mm = sc.memory;
    lines.push(
      `**${int(mm.keys)} distinct cached keys**${mm.nodeArgs?.length ? ` (gateway started as \`node ${mm.nodeArgs.join(' ')} bin/portcullis.js serve\`, not with V8's defaults)` : ''} (imported as SHA-256 digests with \`keys import\` in ${f(mm.importSeconds, 1)} s; store: ${mm.store}; ` +
        `each key sent once — store lookup, then cached — at ${int(mm.firstPassRps)} req/s, then ${int(mm.resentSample)} of them again: ${int(mm.resentCacheHits)} cache hits): ` +
        `gateway RSS ${f(mm.rssBeforeMB, 1)} MB idle (this gateway's config: two JWT issuers, one by JWKS, rate-limit policies) → **${f(mm.rssAfterMB, 1)} MB** with every key cached (${int(mm.bytesPerKey)} B of RSS per key). ` +
        `V8 heap: ${f(mm.before.heapUsedMB, 1)} → ${f(mm.after.heapUsedMB, 1)} MB used of ${f(mm.after.heapTotalMB, 1)} MB, of which the young generation (sized by V8 for the allocation rate of the warm-up, not for the cache) ${f(mm.after.newSpaceMB, 1)} MB.` +
        (mm.shippedIdleMB ? ` The shipped config on PostgreSQL idles at **${f(mm.shippedIdleMB, 1)} MB**.` : '') +
        (r.embeddedIdleRssMB ? ` For comparison, a gateway on the embedded SQLite store idles at ${f(r.embeddedIdleRssMB, 1)} MB RSS.` : ''),
      '',
    );
  }
  if (sc.embedded) {
    const e = sc.embedded;
    lines.push(
      `**The shipped config on its embedded store** (\`npm start\`, bench/embedded.js): idle RSS **${f(e.idleRssMB, 1)} MB**; ` +
        `after ${int(e.loadRps)} req/s of one key's load **${f(e.rssAfterLoadMB, 1)} MB**; cold key verification (store + argon2) p50 ${f(e.coldMs.p50)} ms, p90 ${f(e.coldMs.p90)} ms (cached ${f(e.warmMs.p50)} ms); ` +
        `\`keys import\` of ${int(e.keys)} SHA-256 keys in ${f(e.importSeconds, 1)} s (CLI peak RSS ${f(e.importPeakRssMB, 1)} MB); a gateway on them idles at ${f(e.idleRssWithKeysMB, 1)} MB, ${f(e.rssAfterSampleMB, 1)} MB after verifying 2 000 of them.`,
      '',
    );
  }
  if (sc.cold) {
    lines.push('**Cold against warm verification** (one request at a time on one keep-alive connection):', '');
    lines.push('| credential | n | first request p50 ms | first request p90 ms | cached p50 ms |', '| --- | ---: | ---: | ---: | ---: |');
    for (const c of sc.cold.results) lines.push(`| ${c.credential} | ${c.n} | ${f(c.coldMs.p50)} | ${f(c.coldMs.p90)} | ${f(c.warmMs.p50)} |`);
    lines.push('');
  }
  if (r.notes.length) {
    lines.push('Notes:', '');
    for (const n of r.notes) lines.push(`- ${n}`);
    lines.push('');
  }
  return lines.join('\n');
}
