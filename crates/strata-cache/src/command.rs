//! Redis commands as the proxy sees them: where a command's keys are, and whether it goes to one
//! shard, is split over several, answered by the proxy itself, or refused. Arity and key
//! positions are Redis 7's (a test compares them with a real redis-server's `COMMAND INFO`).

/// How a command is routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Keys at `first`, `first + step`, ... up to `last` (negative: counted from the end, -1
    /// the last argument). All of them must live on one shard; the command goes there whole.
    Keys {
        /// Index of the first key.
        first: u8,
        /// Index of the last key; negative counts from the end.
        last: i8,
        /// Distance between keys.
        step: u8,
    },
    /// A count of keys at `at`, the keys right after it (EVAL, ZUNIONSTORE, ...): all on one
    /// shard. `dest` is an index of one more key before the count (ZUNIONSTORE's destination).
    NumKeys {
        /// Index of the key count.
        at: u8,
        /// Index of a destination key before it, or 0.
        dest: u8,
    },
    /// Split by shard and merged (MGET, MSET, DEL, ...).
    Split(Split),
    /// Answered by the proxy.
    Local(Local),
    /// Sent to every shard and merged.
    FanOut(FanOut),
    /// Blocks until data arrives: sent on a connection of the client's own to the server all
    /// its keys live on, never on the shared pipeline.
    Blocking(Blocking),
    /// MULTI, EXEC, DISCARD, WATCH, UNWATCH.
    Transaction(Transaction),
    /// PUBLISH: to the server the channel's name hashes to.
    Publish,
    /// SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE: the client enters subscribed mode.
    Subscribe,
    /// UNSUBSCRIBE and kin, outside subscribed mode: answered by the proxy.
    Unsubscribe,
    /// Refused, with the reason.
    Unsupported(&'static str),
}

/// Multi-key commands split by shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// MGET: an array of values, in the order of the keys.
    Mget,
    /// MSET: key-value pairs; `+OK` when every shard says so.
    Mset,
    /// DEL, UNLINK, EXISTS, TOUCH: the sum of the shards' integers.
    Sum,
}

/// Where a blocking command's keys are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocking {
    /// Keys from `first` to `last` (negative: from the end), as [`Route::Keys`].
    Keys {
        /// Index of the first key.
        first: u8,
        /// Index of the last key; negative counts from the end.
        last: i8,
    },
    /// A count of keys at `at`, the keys after it (BLMPOP, BZMPOP).
    NumKeys {
        /// Index of the key count.
        at: u8,
    },
    /// The keys after `STREAMS`: the first half of what follows (XREAD, XREADGROUP).
    Streams,
}

/// The transaction commands, run on a connection of the client's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transaction {
    /// MULTI: the commands that follow are queued by the proxy.
    Multi,
    /// EXEC: the queued commands go to their server at once, inside MULTI/EXEC.
    Exec,
    /// DISCARD: the queue is dropped.
    Discard,
    /// WATCH keys: sent at once to the keys' server, on the connection EXEC will use.
    Watch,
    /// UNWATCH
    Unwatch,
}

/// Commands the proxy answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    /// PING [message]
    Ping,
    /// ECHO message
    Echo,
    /// QUIT: `+OK`, then the connection closes.
    Quit,
    /// SELECT 0 only.
    Select,
    /// AUTH [user] password, against the listener's `password`.
    Auth,
    /// HELLO [2 [AUTH user pass] [SETNAME name]]; 3 gets `-NOPROTO`.
    Hello,
    /// COMMAND, COMMAND COUNT, COMMAND INFO, COMMAND DOCS.
    Command,
    /// CLIENT SETNAME, SETINFO, GETNAME, ID.
    Client,
    /// INFO [section]
    Info,
}

/// Commands sent to every shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FanOut {
    /// DBSIZE: the sum.
    Dbsize,
    /// KEYS pattern: every shard's keys, in shard order.
    Keys,
    /// SCAN cursor [MATCH ..] [COUNT ..] [TYPE ..]: one server at a time, its cursor and its
    /// index folded into the cursor the client sees.
    Scan,
}

/// One command: its arity (Redis's convention: n exactly, or -n for at least n) and route.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Lower-case name, as Redis names it.
    pub name: &'static str,
    /// n: exactly n arguments (the name included); -n: at least n.
    pub arity: i8,
    /// Where it goes.
    pub route: Route,
}

impl Spec {
    /// Whether `args` arguments (the name included) fit the arity.
    pub fn arity_ok(&self, args: usize) -> bool {
        let a = self.arity as isize;
        if a >= 0 {
            args as isize == a
        } else {
            args as isize >= -a
        }
    }
}

const fn key(name: &'static str, arity: i8) -> Spec {
    keys(name, arity, 1, 1, 1)
}

const fn keys(name: &'static str, arity: i8, first: u8, last: i8, step: u8) -> Spec {
    Spec {
        name,
        arity,
        route: Route::Keys { first, last, step },
    }
}

const fn numkeys(name: &'static str, arity: i8, at: u8, dest: u8) -> Spec {
    Spec {
        name,
        arity,
        route: Route::NumKeys { at, dest },
    }
}

const fn blocking(name: &'static str, arity: i8, keys: Blocking) -> Spec {
    Spec {
        name,
        arity,
        route: Route::Blocking(keys),
    }
}

const fn route(name: &'static str, arity: i8, route: Route) -> Spec {
    Spec { name, arity, route }
}

const SERVER: &str = "it acts on a whole server, and the proxy fronts several";
const NO_KEY: &str = "it has no key to choose a shard by";

/// Every command the proxy knows, sorted by name for the lookup.
pub static COMMANDS: &[Spec] = &[
    key("append", 3),
    route("auth", -2, Route::Local(Local::Auth)),
    route("bgrewriteaof", 1, Route::Unsupported(SERVER)),
    route("bgsave", -1, Route::Unsupported(SERVER)),
    key("bitcount", -2),
    key("bitfield", -2),
    key("bitfield_ro", -2),
    keys("bitop", -4, 2, -1, 1),
    key("bitpos", -3),
    blocking("blmove", 6, Blocking::Keys { first: 1, last: 2 }),
    blocking("blmpop", -5, Blocking::NumKeys { at: 2 }),
    blocking("blpop", -3, Blocking::Keys { first: 1, last: -2 }),
    blocking("brpop", -3, Blocking::Keys { first: 1, last: -2 }),
    blocking("brpoplpush", 4, Blocking::Keys { first: 1, last: 2 }),
    blocking("bzmpop", -5, Blocking::NumKeys { at: 2 }),
    blocking("bzpopmax", -3, Blocking::Keys { first: 1, last: -2 }),
    blocking("bzpopmin", -3, Blocking::Keys { first: 1, last: -2 }),
    route("client", -2, Route::Local(Local::Client)),
    route("cluster", -2, Route::Unsupported(SERVER)),
    route("command", -1, Route::Local(Local::Command)),
    route("config", -2, Route::Unsupported(SERVER)),
    keys("copy", -3, 1, 2, 1),
    route("dbsize", 1, Route::FanOut(FanOut::Dbsize)),
    route("debug", -2, Route::Unsupported(SERVER)),
    key("decr", 2),
    key("decrby", 3),
    route("del", -2, Route::Split(Split::Sum)),
    route("discard", 1, Route::Transaction(Transaction::Discard)),
    key("dump", 2),
    route("echo", 2, Route::Local(Local::Echo)),
    numkeys("eval", -3, 2, 0),
    numkeys("eval_ro", -3, 2, 0),
    numkeys("evalsha", -3, 2, 0),
    numkeys("evalsha_ro", -3, 2, 0),
    route("exec", 1, Route::Transaction(Transaction::Exec)),
    route("exists", -2, Route::Split(Split::Sum)),
    key("expire", -3),
    key("expireat", -3),
    key("expiretime", 2),
    route("failover", -1, Route::Unsupported(SERVER)),
    numkeys("fcall", -3, 2, 0),
    numkeys("fcall_ro", -3, 2, 0),
    route("flushall", -1, Route::Unsupported(SERVER)),
    route("flushdb", -1, Route::Unsupported(SERVER)),
    route("function", -2, Route::Unsupported(SERVER)),
    key("geoadd", -5),
    key("geodist", -4),
    key("geohash", -2),
    key("geopos", -2),
    key("georadius", -6),
    key("georadius_ro", -6),
    key("georadiusbymember", -5),
    key("georadiusbymember_ro", -5),
    key("geosearch", -7),
    keys("geosearchstore", -8, 1, 2, 1),
    key("get", 2),
    key("getbit", 3),
    key("getdel", 2),
    key("getex", -2),
    key("getrange", 4),
    key("getset", 3),
    key("hdel", -3),
    route("hello", -1, Route::Local(Local::Hello)),
    key("hexists", 3),
    key("hget", 3),
    key("hgetall", 2),
    key("hincrby", 4),
    key("hincrbyfloat", 4),
    key("hkeys", 2),
    key("hlen", 2),
    key("hmget", -3),
    key("hmset", -4),
    key("hrandfield", -2),
    key("hscan", -3),
    key("hset", -4),
    key("hsetnx", 4),
    key("hstrlen", 3),
    key("hvals", 2),
    key("incr", 2),
    key("incrby", 3),
    key("incrbyfloat", 3),
    route("info", -1, Route::Local(Local::Info)),
    route("keys", 2, Route::FanOut(FanOut::Keys)),
    route("lastsave", 1, Route::Unsupported(SERVER)),
    keys("lcs", -3, 1, 2, 1),
    key("lindex", 3),
    key("linsert", 5),
    key("llen", 2),
    keys("lmove", 5, 1, 2, 1),
    numkeys("lmpop", -4, 1, 0),
    key("lpop", -2),
    key("lpos", -3),
    key("lpush", -3),
    key("lpushx", -3),
    key("lrange", 4),
    key("lrem", 4),
    key("lset", 4),
    key("ltrim", 4),
    route("memory", -2, Route::Unsupported(SERVER)),
    route("mget", -2, Route::Split(Split::Mget)),
    route("migrate", -6, Route::Unsupported(SERVER)),
    route("monitor", 1, Route::Unsupported(SERVER)),
    route("move", 3, Route::Unsupported("there is only database 0")),
    route("mset", -3, Route::Split(Split::Mset)),
    keys("msetnx", -3, 1, -1, 2),
    route("multi", 1, Route::Transaction(Transaction::Multi)),
    keys("object", -2, 2, 2, 1),
    key("persist", 2),
    key("pexpire", -3),
    key("pexpireat", -3),
    key("pexpiretime", 2),
    key("pfadd", -2),
    keys("pfcount", -2, 1, -1, 1),
    route("pfdebug", 3, Route::Unsupported(SERVER)),
    keys("pfmerge", -2, 1, -1, 1),
    route("ping", -1, Route::Local(Local::Ping)),
    key("psetex", 4),
    route("psubscribe", -2, Route::Subscribe),
    key("pttl", 2),
    route("publish", 3, Route::Publish),
    route(
        "pubsub",
        -2,
        Route::Unsupported("PUBSUB introspection would need every server's answer"),
    ),
    route("punsubscribe", -1, Route::Unsubscribe),
    route("quit", -1, Route::Local(Local::Quit)),
    route("randomkey", 1, Route::Unsupported(NO_KEY)),
    keys("rename", 3, 1, 2, 1),
    keys("renamenx", 3, 1, 2, 1),
    route("replicaof", 3, Route::Unsupported(SERVER)),
    key("restore", -4),
    key("rpop", -2),
    keys("rpoplpush", 3, 1, 2, 1),
    key("rpush", -3),
    key("rpushx", -3),
    key("sadd", -3),
    route("save", 1, Route::Unsupported(SERVER)),
    route("scan", -2, Route::FanOut(FanOut::Scan)),
    key("scard", 2),
    route("script", -2, Route::Unsupported(SERVER)),
    keys("sdiff", -2, 1, -1, 1),
    keys("sdiffstore", -3, 1, -1, 1),
    route("select", 2, Route::Local(Local::Select)),
    key("set", -3),
    key("setbit", 4),
    key("setex", 4),
    key("setnx", 3),
    key("setrange", 4),
    route("shutdown", -1, Route::Unsupported(SERVER)),
    keys("sinter", -2, 1, -1, 1),
    numkeys("sintercard", -3, 1, 0),
    keys("sinterstore", -3, 1, -1, 1),
    key("sismember", 3),
    route("slaveof", 3, Route::Unsupported(SERVER)),
    route("slowlog", -2, Route::Unsupported(SERVER)),
    key("smembers", 2),
    key("smismember", -3),
    keys("smove", 4, 1, 2, 1),
    key("sort", -2),
    key("sort_ro", -2),
    key("spop", -2),
    key("spublish", 3),
    key("srandmember", -2),
    key("srem", -3),
    key("sscan", -3),
    route("ssubscribe", -2, Route::Subscribe),
    key("strlen", 2),
    route("subscribe", -2, Route::Subscribe),
    key("substr", 4),
    keys("sunion", -2, 1, -1, 1),
    keys("sunionstore", -3, 1, -1, 1),
    route("sunsubscribe", -1, Route::Unsubscribe),
    route("swapdb", 3, Route::Unsupported("there is only database 0")),
    route("time", 1, Route::Unsupported(SERVER)),
    route("touch", -2, Route::Split(Split::Sum)),
    key("ttl", 2),
    key("type", 2),
    route("unlink", -2, Route::Split(Split::Sum)),
    route("unsubscribe", -1, Route::Unsubscribe),
    route("unwatch", 1, Route::Transaction(Transaction::Unwatch)),
    route("wait", 3, Route::Unsupported(SERVER)),
    route("watch", -2, Route::Transaction(Transaction::Watch)),
    key("xack", -4),
    key("xadd", -5),
    key("xautoclaim", -6),
    key("xclaim", -6),
    key("xdel", -3),
    keys("xgroup", -2, 2, 2, 1),
    keys("xinfo", -2, 2, 2, 1),
    key("xlen", 2),
    key("xpending", -3),
    key("xrange", -4),
    blocking("xread", -4, Blocking::Streams),
    blocking("xreadgroup", -7, Blocking::Streams),
    key("xrevrange", -4),
    key("xsetid", -3),
    key("xtrim", -4),
    key("zadd", -4),
    key("zcard", 2),
    key("zcount", 4),
    numkeys("zdiff", -3, 1, 0),
    numkeys("zdiffstore", -4, 2, 1),
    key("zincrby", 4),
    numkeys("zinter", -3, 1, 0),
    numkeys("zintercard", -3, 1, 0),
    numkeys("zinterstore", -4, 2, 1),
    key("zlexcount", 4),
    numkeys("zmpop", -4, 1, 0),
    key("zmscore", -3),
    key("zpopmax", -2),
    key("zpopmin", -2),
    key("zrandmember", -2),
    key("zrange", -4),
    key("zrangebylex", -4),
    key("zrangebyscore", -4),
    keys("zrangestore", -5, 1, 2, 1),
    key("zrank", -3),
    key("zrem", -3),
    key("zremrangebylex", 4),
    key("zremrangebyrank", 4),
    key("zremrangebyscore", 4),
    key("zrevrange", -4),
    key("zrevrangebylex", -4),
    key("zrevrangebyscore", -4),
    key("zrevrank", -3),
    key("zscan", -3),
    key("zscore", 3),
    numkeys("zunion", -3, 1, 0),
    numkeys("zunionstore", -4, 2, 1),
];

/// Commands Redis flags `readonly`: with `read_from = "replica"` or `"nearest"` they may go to
/// a replica. Sorted.
pub static READONLY: &[&str] = &[
    "bitcount",
    "bitfield_ro",
    "bitpos",
    "dbsize",
    "dump",
    "eval_ro",
    "evalsha_ro",
    "exists",
    "expiretime",
    "fcall_ro",
    "geodist",
    "geohash",
    "geopos",
    "georadius_ro",
    "georadiusbymember_ro",
    "geosearch",
    "get",
    "getbit",
    "getrange",
    "hexists",
    "hget",
    "hgetall",
    "hkeys",
    "hlen",
    "hmget",
    "hrandfield",
    "hscan",
    "hstrlen",
    "hvals",
    "keys",
    "lcs",
    "lindex",
    "llen",
    "lpos",
    "lrange",
    "mget",
    "pexpiretime",
    "pfcount",
    "pttl",
    "randomkey",
    "scan",
    "scard",
    "sdiff",
    "sinter",
    "sintercard",
    "sismember",
    "smembers",
    "smismember",
    "sort_ro",
    "srandmember",
    "sscan",
    "strlen",
    "substr",
    "sunion",
    "touch",
    "ttl",
    "type",
    "xlen",
    "xpending",
    "xrange",
    "xread",
    "xrevrange",
    "zcard",
    "zcount",
    "zdiff",
    "zinter",
    "zintercard",
    "zlexcount",
    "zmscore",
    "zrandmember",
    "zrange",
    "zrangebylex",
    "zrangebyscore",
    "zrank",
    "zrevrange",
    "zrevrangebylex",
    "zrevrangebyscore",
    "zrevrank",
    "zscan",
    "zscore",
    "zunion",
];

impl Spec {
    /// Whether the command only reads, as Redis flags it.
    pub fn readonly(&self) -> bool {
        // looked up once per command in the table, then by the spec's place in it
        static BY_INDEX: std::sync::OnceLock<Vec<bool>> = std::sync::OnceLock::new();
        let by_index = BY_INDEX.get_or_init(|| {
            COMMANDS
                .iter()
                .map(|s| READONLY.binary_search(&s.name).is_ok())
                .collect()
        });
        let index = (self as *const Spec as usize).wrapping_sub(COMMANDS.as_ptr() as usize)
            / std::mem::size_of::<Spec>();
        match by_index.get(index) {
            Some(&ro) if std::ptr::eq(&COMMANDS[index], self) => ro,
            _ => READONLY.binary_search(&self.name).is_ok(),
        }
    }
}

/// The command named `upper` (ASCII upper case, as [`crate::resp::Command::name`] gives it).
pub fn lookup(upper: &[u8]) -> Option<&'static Spec> {
    // the commands most traffic is made of, before the search
    static HOT: std::sync::OnceLock<[(&'static [u8], &'static Spec); 4]> =
        std::sync::OnceLock::new();
    let hot = HOT.get_or_init(|| {
        let find = |name: &str| {
            COMMANDS
                .iter()
                .find(|s| s.name == name)
                .expect("a hot command is in the table")
        };
        [
            (b"GET", find("get")),
            (b"SET", find("set")),
            (b"MGET", find("mget")),
            (b"DEL", find("del")),
        ]
    });
    if let Some((_, spec)) = hot.iter().find(|(name, _)| *name == upper) {
        return Some(spec);
    }
    COMMANDS
        .binary_search_by(|s| {
            let name = s.name.as_bytes();
            let n = name.len().min(upper.len());
            for i in 0..n {
                let c = name[i].cmp(&upper[i].to_ascii_lowercase());
                if c.is_ne() {
                    return c;
                }
            }
            name.len().cmp(&upper.len())
        })
        .ok()
        .map(|i| &COMMANDS[i])
}

/// The key positions of a command with `len` arguments, or `None` when the count at a
/// [`Route::NumKeys`] position is not a valid number for them.
pub fn key_positions(route: &Route, args: &[&[u8]]) -> Option<Vec<usize>> {
    let len = args.len();
    match *route {
        Route::Keys { first, last, step } => {
            let last = if last < 0 {
                len as isize + last as isize
            } else {
                last as isize
            };
            let mut out = Vec::new();
            let mut i = first as isize;
            while i <= last && (i as usize) < len {
                out.push(i as usize);
                i += step as isize;
            }
            Some(out)
        }
        Route::NumKeys { at, dest } => {
            let count: usize = std::str::from_utf8(args.get(at as usize)?)
                .ok()?
                .parse()
                .ok()?;
            let first = at as usize + 1;
            if count == 0 || first + count > len {
                return None;
            }
            let mut out: Vec<usize> = Vec::with_capacity(count + 1);
            if dest > 0 {
                out.push(dest as usize);
            }
            out.extend(first..first + count);
            Some(out)
        }
        Route::Blocking(Blocking::Keys { first, last }) => key_positions(
            &Route::Keys {
                first,
                last,
                step: 1,
            },
            args,
        ),
        Route::Blocking(Blocking::NumKeys { at }) => {
            key_positions(&Route::NumKeys { at, dest: 0 }, args)
        }
        Route::Blocking(Blocking::Streams) => {
            // XREADGROUP's GROUP group consumer come first, and may be named "streams"
            let from = if args[0].eq_ignore_ascii_case(b"XREADGROUP") {
                4
            } else {
                1
            };
            let streams = from
                + args
                    .get(from..)?
                    .iter()
                    .position(|a| a.eq_ignore_ascii_case(b"STREAMS"))?;
            let rest = len - streams - 1;
            if rest == 0 || !rest.is_multiple_of(2) {
                return None;
            }
            Some((streams + 1..streams + 1 + rest / 2).collect())
        }
        Route::Transaction(Transaction::Watch) => Some((1..len).collect()),
        Route::Publish => Some(vec![1]),
        Route::Split(Split::Mset) => Some((1..len).step_by(2).collect()),
        Route::Split(_) => Some((1..len).collect()),
        _ => Some(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readonly_list_is_sorted_and_names_known_commands() {
        for w in READONLY.windows(2) {
            assert!(w[0] < w[1], "{} before {}", w[0], w[1]);
        }
        for name in READONLY {
            assert!(
                lookup(name.to_ascii_uppercase().as_bytes()).is_some(),
                "{name}"
            );
        }
    }

    #[test]
    fn the_table_is_sorted_for_the_lookup() {
        for w in COMMANDS.windows(2) {
            assert!(w[0].name < w[1].name, "{} before {}", w[0].name, w[1].name);
        }
        assert_eq!(lookup(b"GET").map(|s| s.name), Some("get"));
        assert_eq!(lookup(b"ZUNIONSTORE").map(|s| s.name), Some("zunionstore"));
        assert_eq!(lookup(b"APPEND").map(|s| s.name), Some("append"));
        // '_' sorts after the upper-case letters and before the lower-case ones: every name
        // is found, those with '_' too
        for spec in COMMANDS {
            let upper = spec.name.to_ascii_uppercase();
            assert_eq!(lookup(upper.as_bytes()).map(|s| s.name), Some(spec.name));
        }
        assert!(lookup(b"GETX").is_none());
        assert!(lookup(b"").is_none());
    }

    #[test]
    fn key_positions_follow_the_spec() {
        let args: Vec<&[u8]> = vec![b"mset", b"a", b"1", b"b", b"2"];
        assert_eq!(
            key_positions(&Route::Split(Split::Mset), &args),
            Some(vec![1, 3])
        );
        let args: Vec<&[u8]> = vec![b"zunionstore", b"d", b"2", b"a", b"b", b"WEIGHTS"];
        let spec = lookup(b"ZUNIONSTORE").unwrap();
        assert_eq!(key_positions(&spec.route, &args), Some(vec![1, 3, 4]));
        let args: Vec<&[u8]> = vec![b"eval", b"return 1", b"3", b"a"];
        assert_eq!(key_positions(&lookup(b"EVAL").unwrap().route, &args), None);
        let args: Vec<&[u8]> = vec![b"bitop", b"and", b"d", b"a", b"b"];
        assert_eq!(
            key_positions(&lookup(b"BITOP").unwrap().route, &args),
            Some(vec![2, 3, 4])
        );
    }
}
