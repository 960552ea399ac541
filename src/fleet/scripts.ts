/**
 * The Lua scripts that make fleet budgets exact: each runs atomically inside Redis, on Redis's own
 * clock (TIME), so however many processes ask at once and whatever their clocks say, the fleet
 * admits the budget. Numbers go back as strings: Redis truncates Lua numbers to integers.
 */

/**
 * The bucket as it stands now, shared by the scripts that take from it and charge it: Redis's
 * clock, ARGV rate (/s), burst and n, and KEYS[1]'s tokens refilled up to now (a new bucket is full).
 */
const BUCKET_NOW = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local rate, burst, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local h = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens, ts = tonumber(h[1]), tonumber(h[2])
if tokens == nil or ts == nil then tokens = burst; ts = now end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate / 1000)
  ts = now
end
`;

/**
 * A token bucket that may go into debt for reservations (a queue held in the bucket itself, as
 * GCRA does). KEYS[1]: the bucket. ARGV: rate (/s), burst, n, reserve horizon (ms; 0: no
 * reservation), lease (most tokens to hand out at once when they are there), turns (most
 * reservations of n to make at once, n/rate apart, all within the horizon).
 * Returns {granted tokens, wait ms}: granted ≥ n at once (the lease, possibly into debt), or a multiple of n
 * reserved with the wait until the first turn, or 0 with the wait until n would be there.
 */
export const TAKE_SCRIPT = `
${BUCKET_NOW}local horizon, lease, turns = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local granted, wait = 0, 0
if tokens >= n then
  -- A lease may spend the next few tokens ahead of time (into debt): later takers wait for them,
  -- so the fleet's long-run rate stays exact.
  granted = math.max(n, lease)
  tokens = tokens - granted
else
  wait = (n - tokens) * 1000 / rate
  if horizon > 0 and wait <= horizon then
    local m = 1
    if turns > 1 then m = math.min(turns, math.floor((horizon - wait) * rate / (n * 1000)) + 1) end
    granted = n * m
    tokens = tokens - granted
  end
end
redis.call('HSET', KEYS[1], 't', string.format('%.6f', tokens), 'ts', string.format('%.3f', ts))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) * 1000 / rate) + 1000)
return {granted, string.format('%.3f', wait)}
`;

/**
 * A fleet-wide adaptive rate (core/adaptive-rate.ts's cubic, computed here once for the fleet).
 * KEYS[1]: the rate's hash. ARGV: kind (read|success|throttle), start, min, max (-1: none), beta,
 * scale, sends since the caller last reported, how long ago the throttled request was sent (ms).
 * Growth is a function of the time since the fleet's last cut, so every process that asks gets
 * the same rate, and it never compounds per process. Sends are reported in batches and measured
 * in 0.5 s buckets, fleet-wide: growth is capped at twice what the fleet really sends.
 * Returns {rate, cut (0/1), throttles, cuts}.
 */
export const ADAPTIVE_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local kind = ARGV[1]
local start, lo, hi = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local beta, scale = tonumber(ARGV[5]), tonumber(ARGV[6])
local sends, sentAgo = tonumber(ARGV[7]), tonumber(ARGV[8])
if hi < 0 then hi = math.huge end
local function clamp(x) return math.min(hi, math.max(lo, x)) end
local f = redis.call('HMGET', KEYS[1], 'rate', 'wmax', 'k', 'lastcut', 'lastthr', 'throttles', 'cuts', 'measured', 'bstart', 'bcount')
local rate = tonumber(f[1])
local wmax, k, lastcut, lastthr = tonumber(f[2]), tonumber(f[3]), tonumber(f[4]), tonumber(f[5])
local throttles, cuts, measured = tonumber(f[6]), tonumber(f[7]), tonumber(f[8])
local bstart, bcount = tonumber(f[9]), tonumber(f[10])
if rate == nil then
  rate = clamp(start); wmax = rate; k = 0; lastcut = now; lastthr = -1
  throttles = 0; cuts = 0; measured = 0; bstart = math.floor(now / 500) * 500; bcount = 0
end
bcount = bcount + sends
local bucket = math.floor(now / 500) * 500
if sends > 0 and bucket > bstart then
  local current = bcount / ((bucket - bstart) / 1000)
  measured = current * 0.8 + measured * 0.2
  bcount = 0
  bstart = bucket
end
local cut = 0
if kind == 'throttle' then
  throttles = throttles + 1
  local sentAt = now - sentAgo
  if lastthr < 0 or sentAt >= lastthr then
    local current = rate
    if measured > 0 then current = math.min(measured, rate) end
    wmax = current
    k = ((wmax * (1 - beta)) / scale) ^ (1 / 3)
    lastcut = now
    lastthr = now
    cuts = cuts + 1
    rate = clamp(current * beta)
    cut = 1
  end
elseif kind == 'success' then
  local el = (now - lastcut) / 1000
  local nxt = scale * (el - k) ^ 3 + wmax
  if measured > 0 then nxt = math.min(nxt, math.max(2 * measured, rate)) end
  rate = clamp(nxt)
end
redis.call('HSET', KEYS[1], 'rate', string.format('%.6f', rate), 'wmax', string.format('%.6f', wmax), 'k', string.format('%.6f', k),
  'lastcut', string.format('%.3f', lastcut), 'lastthr', string.format('%.3f', lastthr), 'throttles', throttles, 'cuts', cuts,
  'measured', string.format('%.6f', measured), 'bstart', string.format('%.0f', bstart), 'bcount', bcount)
redis.call('PEXPIRE', KEYS[1], 600000)
return {string.format('%.6f', rate), cut, throttles, cuts}
`;

/**
 * The fleet's one live-process registry, written by each process's heartbeat (fleet/heartbeat.ts).
 * KEYS[1]: a sorted set of instance → expiry (Redis ms), the index `sluice fleet status` lists;
 * KEYS[2]: this instance's record (JSON), which expires at the same moment as its index entry.
 * ARGV: instance, time to live (ms; 0 removes the instance), the record.
 * Returns { the record found before (or false), how many processes are live }: the count is the
 * local fallback's divisor (a budget's share per process) and the old record tells whether
 * another process uses the same instance label.
 */
export const HEARTBEAT_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local previous = redis.call('GET', KEYS[2])
local ttl = tonumber(ARGV[2])
if ttl == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('DEL', KEYS[2])
else
  redis.call('SET', KEYS[2], ARGV[3], 'PX', ttl)
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ttl * 2)
end
return {previous, redis.call('ZCARD', KEYS[1])}
`;

/**
 * Claims a rule name for a rule text. KEYS[1]: the name's key. ARGV: text, time to live (ms).
 * Returns the text holding the name (the caller's when the claim succeeded).
 */
export const CLAIM_SCRIPT = `
local held = redis.call('GET', KEYS[1])
if held and held ~= ARGV[1] then return held end
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
return ARGV[1]
`;

/**
 * Takes n tokens whatever the bucket holds (into debt): a cost known only after admission (a
 * DynamoDB read charged by its answer's size). KEYS[1]: the bucket. ARGV: rate (/s), burst, n.
 * The same hash as TAKE_SCRIPT's, so the takes after it wait for the debt to be paid. A negative
 * n gives tokens back (a cost AWS reported lower than charged), never above burst.
 */
export const CHARGE_SCRIPT = `
${BUCKET_NOW}tokens = math.min(burst, tokens - n)
redis.call('HSET', KEYS[1], 't', string.format('%.6f', tokens), 'ts', string.format('%.3f', ts))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) * 1000 / rate) + 1000)
return 1
`;

/**
 * A concurrency slot (Lambda's in-flight invocations), fleet-wide: a sorted set of holder →
 * lease expiry (Redis ms). KEYS[1]: the set. ARGV: holder, max holders, lease (ms). Expired
 * holders (a process that died without leaving) are dropped first. Returns 1 when the holder
 * has a slot, 0 when all `max` are held.
 */
export const SLOT_ENTER_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local lease = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == false and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[1], lease * 2)
return 1
`;

/**
 * Renews the leases of a process's slots. KEYS[1]: the set. ARGV: lease (ms), then the holders.
 * Only holders still in the set are renewed (XX): one that expired meanwhile stays gone.
 */
export const SLOT_RENEW_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local lease = tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', now + lease, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], lease * 2)
return 1
`;

/**
 * Ends a holder's slot and tells the fleet a slot is free: processes whose requests wait for a
 * slot (`--shape aws-limits`) listen on the channel and try again at once, without polling.
 * KEYS[1]: the set. ARGV: holder, the channel. Returns 1 when the holder had a slot.
 */
export const SLOT_LEAVE_SCRIPT = `
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
if removed == 1 then redis.call('PUBLISH', ARGV[2], '1') end
return removed
`;
