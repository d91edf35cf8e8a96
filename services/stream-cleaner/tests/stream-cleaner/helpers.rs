//! Real servers for the integration tests: a database per test on the stack's PostgreSQL
//! (or a private cluster the test may stop), topics and consumer groups per test on the
//! stack's broker, and the simulator as the source of faulty streams.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use airq_kafka::Topics;
use airq_sim::faults::{FaultRates, GroundTruth};
use airq_sim::sim::{FleetSpec, Outgoing, Simulator};
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use secrecy::SecretString;
use sqlx::PgPool;
use stream_cleaner::config::Settings;

pub fn brokers() -> String {
    std::env::var("AIRQ_TEST_BROKERS").unwrap_or_else(|_| "127.0.0.1:19092".into())
}

fn admin_url() -> String {
    std::env::var("AIRQ_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:55432/postgres".into())
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// Topics of this test only.
pub fn unique_topics() -> Topics {
    let id = uuid::Uuid::new_v4().simple().to_string();
    Topics {
        raw: format!("raw_{id}"),
        processed: format!("processed_{id}"),
        anomalies: format!("anomalies_{id}"),
        dead_letter: format!("dlq_{id}"),
    }
}

/// A fresh database on the server at `admin` (a URL to its `postgres` database).
pub async fn create_database(admin: &str) -> String {
    let name = unique("airq_test");
    let pool = PgPool::connect(admin)
        .await
        .expect("connect to the test PostgreSQL");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&pool)
        .await
        .expect("create database");
    pool.close().await;
    let (base, _) = admin.rsplit_once('/').expect("URL with a database");
    format!("{base}/{name}")
}

pub async fn test_database() -> String {
    create_database(&admin_url()).await
}

/// Settings for a cleaner on this test's database, topics and group.
pub fn settings(db_url: &str, topics: &Topics) -> Settings {
    let mut s = Settings::load().expect("default settings");
    s.database.url = SecretString::from(db_url.to_owned());
    s.kafka.brokers = brokers();
    s.kafka.topics = topics.clone();
    s.kafka.partitions = 3;
    s.cleaner.group_id = unique("cleaner");
    s.cleaner.batch_size = 1000;
    s
}

/// The same settings as environment variables, for a cleaner subprocess.
pub fn settings_env(s: &Settings, db_url: &str) -> Vec<(String, String)> {
    let t = &s.kafka.topics;
    [
        ("AIRQ__DATABASE__URL", db_url),
        ("AIRQ__KAFKA__BROKERS", &s.kafka.brokers),
        ("AIRQ__KAFKA__TOPICS__RAW", &t.raw),
        ("AIRQ__KAFKA__TOPICS__PROCESSED", &t.processed),
        ("AIRQ__KAFKA__TOPICS__ANOMALIES", &t.anomalies),
        ("AIRQ__KAFKA__TOPICS__DEAD_LETTER", &t.dead_letter),
        ("AIRQ__KAFKA__PARTITIONS", &s.kafka.partitions.to_string()),
        ("AIRQ__CLEANER__GROUP_ID", &s.cleaner.group_id),
        (
            "AIRQ__CLEANER__BATCH_SIZE",
            &s.cleaner.batch_size.to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// A simulated stream: `sensors` x `ticks` readings from 2025-06-01, one a minute.
pub fn simulate(
    sensors: usize,
    ticks: u64,
    faults: FaultRates,
    seed: u64,
) -> (Vec<Outgoing>, Vec<GroundTruth>) {
    let out = Simulator::new(FleetSpec {
        sensors,
        center: airq_domain::Location {
            lat: 48.8566,
            lon: 2.3522,
        },
        start: "2025-06-01T00:00:00Z".parse().expect("valid time"),
        interval: chrono::Duration::minutes(1),
        seed,
        faults,
    })
    .run(ticks);
    (out.messages, out.truth)
}

/// Every default fault rate times `factor`.
pub fn scaled_faults(factor: f64) -> FaultRates {
    FaultRates::default().scaled(factor)
}

/// The test's own oracle, independent of the cleaner's decoder: a message is a reading
/// if it is a JSON object with the four required fields. Returns its (sensor_id, timestamp).
pub fn oracle_key(payload: &[u8]) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let o = v.as_object()?;
    if !["sensor_id", "timestamp", "location", "measurements"]
        .iter()
        .all(|k| o.contains_key(*k))
    {
        return None;
    }
    let ts: chrono::DateTime<chrono::Utc> = o["timestamp"].as_str()?.parse().ok()?;
    Some((o["sensor_id"].as_str()?.to_owned(), ts.to_rfc3339()))
}

pub async fn produce(topic: &str, msgs: &[Outgoing]) {
    produce_on(&brokers(), topic, msgs).await
}

pub async fn produce_on(brokers: &str, topic: &str, msgs: &[Outgoing]) {
    airq_kafka::admin::ensure_topics(brokers, &[topic], 3)
        .await
        .expect("create topic");
    let producer = airq_kafka::client::producer(brokers, 5).expect("producer");
    let mut out = sensor_sim::publish::Publisher::new(producer, topic.to_owned());
    for m in msgs {
        out.send(&m.key, &m.payload).await.expect("send");
    }
    out.flush().await.expect("flush");
}

/// Messages of every malformed kind we could think of, then seeded random bytes, `n` in all.
/// Each is something no consumer may crash or stall on.
pub fn malformed(n: usize, seed: u64) -> Vec<Vec<u8>> {
    use rand::{Rng, SeedableRng};
    let good = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = serde_json::json!({"sensor_id":"CAP_001","timestamp":"2025-06-01T00:00:00Z",
            "location":{"lat":48.85,"lon":2.35},"measurements":{"pm2_5":12.5,"pm10":25.3,"no2":40.2}});
        f(&mut v);
        serde_json::to_vec(&v).expect("json")
    };
    let mut kinds: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"{".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"\"a string\"".to_vec(),
        b"42".to_vec(),
        b"{\"sensor_id\":\"CAP_001\"".to_vec(),
        vec![0xff, 0xfe, 0x00, 0x01],
        b"{\"sensor_id\":\"\xc3\x28\"}".to_vec(),
        "[".repeat(10_000).into_bytes(),
        format!("{{\"sensor_id\":\"{}\"}}", "x".repeat(100_000)).into_bytes(),
        good(&|v| v["sensor_id"] = "CAP\u{0}001".into()),
        good(&|v| v["sensor_id"] = "".into()),
        good(&|v| v["sensor_id"] = "x".repeat(65).into()),
        good(&|v| v["sensor_id"] = "capteur-é".into()),
        good(&|v| v["sensor_id"] = 17.into()),
        good(&|v| v["timestamp"] = "yesterday".into()),
        good(&|v| v["timestamp"] = "2999-01-01T00:00:00Z".into()),
        good(&|v| v["timestamp"] = "1970-01-01T00:00:00Z".into()),
        good(&|v| v["timestamp"] = serde_json::Value::Null),
        good(&|v| v["location"]["lat"] = 91.into()),
        good(&|v| v["location"]["lon"] = "east".into()),
        good(&|v| v["location"] = serde_json::Value::Null),
        good(&|v| v["measurements"] = "none".into()),
        good(&|v| v["measurements"]["pm2_5"] = "12".into()),
        good(&|v| {
            v.as_object_mut().expect("object").remove("measurements");
        }),
        good(&|v| {
            v.as_object_mut().expect("object").remove("timestamp");
        }),
        br#"{"sensor_id":"CAP_001","timestamp":"2025-06-01T00:00:00Z","location":{"lat":48.85,"lon":2.35},"measurements":{"pm2_5":1e999}}"#.to_vec(),
    ];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    while kinds.len() < n {
        let len = rng.random_range(0..300);
        kinds.push((0..len).map(|_| rng.random::<u8>()).collect());
    }
    kinds.truncate(n);
    kinds
}

/// Produces `payloads` as they are, keyless.
pub async fn produce_bytes(brokers: &str, topic: &str, payloads: &[Vec<u8>]) {
    airq_kafka::admin::ensure_topics(brokers, &[topic], 3)
        .await
        .expect("create topic");
    let producer = airq_kafka::client::publisher(brokers, 5).expect("producer");
    for chunk in payloads.chunks(5000) {
        let messages: Vec<_> = chunk
            .iter()
            .map(|p| airq_kafka::publish::Outgoing::new(topic, None, p))
            .collect();
        airq_kafka::publish::send_all(&producer, messages)
            .await
            .expect("send");
    }
}

/// A message read back from a topic.
#[derive(Debug, Clone)]
pub struct Received {
    pub payload: Vec<u8>,
    pub headers: HashMap<String, String>,
}

/// Reads `topic` from the beginning until `expected` messages came and then `settle`
/// passed with nothing new (to catch extras), or `timeout`.
pub async fn read_topic(
    topic: &str,
    expected: usize,
    settle: Duration,
    timeout: Duration,
) -> Vec<Received> {
    read_topic_until(topic, |got| got.len() >= expected, settle, timeout).await
}

/// Reads `topic` from the beginning until `done` holds and then `settle` passed with
/// nothing new, or `timeout`.
pub async fn read_topic_until(
    topic: &str,
    done: impl Fn(&[Received]) -> bool,
    settle: Duration,
    timeout: Duration,
) -> Vec<Received> {
    read_topic_until_on(&brokers(), topic, done, settle, timeout).await
}

/// [`read_topic_until`] on the broker at `brokers`.
pub async fn read_topic_until_on(
    brokers: &str,
    topic: &str,
    done: impl Fn(&[Received]) -> bool,
    settle: Duration,
    timeout: Duration,
) -> Vec<Received> {
    // Partitions assigned directly, no consumer group: the reader does not depend on the
    // broker's group coordination, which is what some tests put under stress.
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in metadata.topics().iter().flat_map(|t| t.partitions()) {
        tpl.add_partition_offset(topic, p.id(), rdkafka::Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let start = Instant::now();
    let mut out = Vec::new();
    let mut last = Instant::now();
    let mut is_done = false;
    while start.elapsed() < timeout {
        if is_done && last.elapsed() >= settle {
            break;
        }
        match tokio::time::timeout(Duration::from_millis(200), consumer.recv()).await {
            Ok(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|x| {
                                (
                                    x.key.to_owned(),
                                    String::from_utf8_lossy(x.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(Received {
                    payload: m.payload().unwrap_or_default().to_vec(),
                    headers,
                });
                last = Instant::now();
                // `done` may be costly: ask it every 2,000 messages and whenever the topic is idle.
                if out.len() % 2000 == 0 {
                    is_done = done(&out);
                }
            }
            Ok(Err(e)) => panic!("reading {topic}: {e}"),
            Err(_) => is_done = done(&out),
        }
    }
    out
}

/// (sensor_id, timestamp) of every processed message read.
pub fn processed_keys(msgs: &[Received]) -> std::collections::BTreeSet<(String, String)> {
    msgs.iter()
        .filter_map(|m| serde_json::from_slice::<airq_domain::ProcessedReading>(&m.payload).ok())
        .map(|r| (r.sensor_id, r.timestamp.to_rfc3339()))
        .collect()
}

/// Deletes a test's topics and database once it passed (a failed test leaves them to look at).
///
/// Not through the broker's DeleteTopics: Tansu 0.6.0 on PostgreSQL storage deletes every
/// topic of the cluster when asked to delete one (tansu-storage's `topic_delete_by.sql` keys
/// the delete on the cluster, docs/tansu.md), so one test's cleanup wiped the topics of the
/// tests running beside it and of a platform running on the same stack. The test's own topics
/// are deleted from the broker's storage instead (`tansu` database of the stack's PostgreSQL;
/// its partitions, records and offsets go with them by cascade). On other storage they stay,
/// and retention empties them.
pub async fn cleanup(topics: &Topics, db_url: &str) {
    let names = [
        &topics.raw,
        &topics.processed,
        &topics.anomalies,
        &topics.dead_letter,
    ];
    let names: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let storage = std::env::var("AIRQ_KAFKA_STORAGE")
        .unwrap_or_else(|_| format!("{}/tansu", admin_url().rsplit_once('/').map_or("", |p| p.0)));
    if storage.starts_with("postgres")
        && let Ok(pool) = PgPool::connect(&storage).await
    {
        let _ = sqlx::query("DELETE FROM topic WHERE name = ANY($1)")
            .bind(&names)
            .execute(&pool)
            .await;
        pool.close().await;
    }
    if let Some((base, name)) = db_url.rsplit_once('/')
        && let Ok(pool) = PgPool::connect(&format!("{base}/postgres")).await
    {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&pool)
            .await;
    }
}

pub async fn count_rows(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM readings")
        .fetch_one(pool)
        .await
        .unwrap_or(-1)
}

/// Waits until the readings table holds `n` rows.
pub async fn wait_for_rows(pool: &PgPool, n: i64, timeout: Duration) -> i64 {
    let start = Instant::now();
    loop {
        let c = count_rows(pool).await;
        if c >= n || start.elapsed() > timeout {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn stored_keys(pool: &PgPool) -> Vec<(String, String)> {
    let rows: Vec<(String, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("SELECT sensor_id, ts FROM readings ORDER BY 1, 2")
            .fetch_all(pool)
            .await
            .expect("select");
    rows.into_iter().map(|(s, t)| (s, t.to_rfc3339())).collect()
}

/// A private PostgreSQL cluster that a test can stop and start.
pub struct PrivatePg {
    dir: PathBuf,
    pub port: u16,
    bin: PathBuf,
}

impl PrivatePg {
    pub fn start() -> Self {
        let bin = PathBuf::from(
            std::env::var("AIRQ_PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into()),
        );
        let dir = std::env::temp_dir().join(unique("airq_pg"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let ok = Command::new("chown")
            .arg("postgres:postgres")
            .arg(&dir)
            .status()
            .expect("chown")
            .success();
        assert!(ok, "chown postgres {}", dir.display());
        let port = free_port();
        let pg = Self { dir, port, bin };
        pg.as_postgres(&["initdb", "-D", "data", "-A", "trust", "-U", "postgres"]);
        pg.start_again();
        pg
    }

    fn as_postgres(&self, args: &[&str]) {
        let prog = self.bin.join(args[0]);
        let status = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(prog)
            .args(&args[1..])
            .current_dir(&self.dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("runuser");
        assert!(status.success(), "{args:?} failed");
    }

    pub fn start_again(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.display()
        );
        self.as_postgres(&[
            "pg_ctl", "-D", "data", "-l", "log", "-o", &opts, "-w", "start",
        ]);
    }

    pub fn stop(&self) {
        self.as_postgres(&["pg_ctl", "-D", "data", "-m", "fast", "-w", "stop"]);
    }

    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", "data", "-m", "immediate", "stop"])
            .current_dir(&self.dir)
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A private Tansu broker on its own PostgreSQL database of the stack's cluster, that a
/// test may kill (SIGKILL) and start again on the same storage.
pub struct PrivateTansu {
    child: Option<std::process::Child>,
    pub port: u16,
    storage: String,
}

impl PrivateTansu {
    pub async fn start() -> Self {
        let storage = create_database(&admin_url()).await;
        let schema = std::env::var("AIRQ_TANSU_SCHEMA").unwrap_or_else(|_| {
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../scripts/tansu/schema.sql"
            )
            .into()
        });
        // The schema, then how PostgreSQL plans Tansu's queries, as scripts/stack.sh applies them.
        let planner = std::path::Path::new(&schema).with_file_name("planner.sql");
        let pool = PgPool::connect(&storage).await.expect("tansu database");
        for file in [std::path::Path::new(&schema), &planner] {
            let sql = std::fs::read_to_string(file).expect("Tansu's SQL");
            sqlx::raw_sql(&sql)
                .execute(&pool)
                .await
                .unwrap_or_else(|e| panic!("apply {}: {e}", file.display()));
        }
        pool.close().await;
        let mut t = Self {
            child: None,
            port: free_port(),
            storage,
        };
        t.start_again();
        t
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn start_again(&mut self) {
        let bin = std::env::var("AIRQ_TANSU_BIN").expect("AIRQ_TANSU_BIN (scripts/stack.sh env)");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", &self.storage])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "tansu did not listen"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL: no chance to flush or close anything.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateTansu {
    fn drop(&mut self) {
        self.kill();
        if let Some((base, name)) = self.storage.rsplit_once('/') {
            let admin = format!("{base}/postgres");
            let name = name.to_owned();
            // Best effort, outside any runtime.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(rt) = rt {
                    rt.block_on(async {
                        if let Ok(pool) = PgPool::connect(&admin).await {
                            let _ = sqlx::query(&format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            ))
                            .execute(&pool)
                            .await;
                        }
                    });
                }
            })
            .join();
        }
    }
}
