-- The Redis keys scripts build: the Lua half of jobs/keys.rs, spelled as keys.rs spells them
-- and checked against it by keys.rs's tests, so no other script spells a key of its own. A
-- script calls `Key.job(p, id)`; scripts.rs inlines each call as its builder's concatenation
-- when it loads the script, so this file is a table of templates: one builder per line, of the
-- form `function Key.<name>(<params>) return <a .. b> end`, and valid Lua as it is. `p` is RQ's
-- prefix with its colon ('rq:'); prosaas's own keys live outside it.
local Key = {}
function Key.queues(p) return p .. 'queues' end
function Key.queue(p, q) return p .. 'queue:' .. q end
function Key.lane(p, q, tenant) return p .. 'queue:' .. q .. '@' .. tenant end
function Key.job(p, id) return p .. 'job:' .. id end
function Key.results(p, id) return p .. 'results:' .. id end
function Key.started(p, q) return p .. 'wip:' .. q end
function Key.finished(p, q) return p .. 'finished:' .. q end
function Key.failed(p, q) return p .. 'failed:' .. q end
function Key.scheduled(p, q) return p .. 'scheduled:' .. q end
function Key.deferred(p, q) return p .. 'deferred:' .. q end
function Key.ready(p, q) return p .. 'ready:' .. q end
function Key.dependents(p, id) return p .. 'job:' .. id .. ':dependents' end
function Key.dependencies(p, id) return p .. 'job::' .. id .. ':dependencies' end
function Key.canceled(p, q) return p .. 'canceled:' .. q end
function Key.groups(p) return p .. 'groups' end
function Key.group(p, name) return p .. 'group:' .. name end
function Key.rate_limit(p, key) return p .. 'rl:' .. key end
function Key.rate_allowed(p, key) return p .. 'rl:' .. key .. ':allowed' end
function Key.rate_waiting(p, key) return p .. 'rl:' .. key .. ':rate_limited' end
function Key.worker(p, w) return p .. 'worker:' .. w end
function Key.workers(p) return p .. 'workers' end
function Key.workers_of(p, q) return p .. 'workers:' .. q end
function Key.rq_scheduler_lock(p, q) return p .. 'scheduler-lock:' .. q end
function Key.rq_scheduler(p, name) return p .. 'scheduler:' .. name end
function Key.suspended(p) return p .. 'suspended' end
function Key.pubsub(p, w) return p .. 'pubsub:' .. w end
function Key.fair_ring(q) return 'prosaas:fair:' .. q .. ':ring' end
function Key.fair_state(q) return 'prosaas:fair:' .. q .. ':state' end
function Key.fair_weights(q) return 'prosaas:fair:' .. q .. ':weights' end
function Key.fair_running(q) return 'prosaas:fair:' .. q .. ':running' end
function Key.fair_queued(q) return 'prosaas:fair:' .. q .. ':queued' end
function Key.fair_bell(q) return 'prosaas:fair:' .. q .. ':bell' end
function Key.running(w) return 'prosaas:worker:' .. w .. ':running' end
function Key.unstarted(id) return 'prosaas:unstarted:' .. id end
function Key.minute(m) return 'prosaas:minute:' .. m end
function Key.paused() return 'prosaas:paused' end
function Key.prune_cursors(q) return 'prosaas:prune:' .. q end
