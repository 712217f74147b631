//! Smoke tests: each of the four real services is up and usable from Rust with the crates the
//! product uses. If one of these fails, every later test would fail for the same reason, so the
//! messages say which service and how to start it.

use std::time::Duration;

use futures::TryStreamExt;
use mc_tests::*;
use mongodb::bson::{doc, RawDocumentBuf, Timestamp};
use mongodb::options::CursorType;

/// Inserts a document and finds its insert entry in `local.oplog.rs` through a tailable-await
/// cursor, the way the agent reads the oplog.
#[tokio::test]
async fn mongodb_insert_is_seen_in_the_oplog_by_a_tailable_cursor() {
    let client = mongo_client().await;
    let db_name = unique_db("smoke");
    let oplog = client
        .database("local")
        .collection::<RawDocumentBuf>("oplog.rs");

    // Resume point: the newest entry before our insert.
    let last = oplog
        .find_one(doc! {})
        .sort(doc! {"$natural": -1})
        .await
        .expect("read local.oplog.rs (is MongoDB a replica set?)")
        .expect("the oplog of an initiated replica set is never empty");
    let start: Timestamp = last.get_timestamp("ts").expect("oplog entries have ts");

    let id = uuid::Uuid::new_v4().to_string();
    let coll = client.database(&db_name).collection("docs");
    coll.insert_one(doc! {"_id": &id, "payload": "hello oplog"})
        .await
        .expect("insert into MongoDB");

    let ns = format!("{db_name}.docs");
    let mut cursor = oplog
        .find(doc! {"ts": {"$gt": start}, "ns": &ns})
        .cursor_type(CursorType::TailableAwait)
        .max_await_time(Duration::from_millis(500))
        .await
        .expect("open a tailable-await cursor on local.oplog.rs");
    let entry = tokio::time::timeout(Duration::from_secs(30), cursor.try_next())
        .await
        .expect("the insert reaches the oplog within 30 s")
        .expect("tail the oplog")
        .expect("tailable cursors do not end");

    assert_eq!(entry.get_str("op").unwrap(), "i");
    assert_eq!(entry.get_str("ns").unwrap(), ns);
    let o = entry.get_document("o").unwrap();
    assert_eq!(o.get_str("_id").unwrap(), id);
    assert_eq!(o.get_str("payload").unwrap(), "hello oplog");
    assert!(entry.get_timestamp("ts").unwrap() > start);

    client.database(&db_name).drop().await.unwrap();
}

/// Put, get (whole and ranged), list with pagination and put-if-absent against the real
/// S3-compatible server.
#[tokio::test]
async fn s3_put_get_list_and_conditional_put() {
    let s3 = s3_client();
    let bucket = fresh_bucket(&s3, "smoke").await;

    for i in 0..5 {
        s3.put_object()
            .bucket(&bucket)
            .key(format!("p/obj-{i}"))
            .body(format!("body {i}").into_bytes().into())
            .send()
            .await
            .expect("put_object");
    }

    let got = s3
        .get_object()
        .bucket(&bucket)
        .key("p/obj-3")
        .send()
        .await
        .expect("get_object");
    let bytes = got.body.collect().await.unwrap().into_bytes();
    assert_eq!(&bytes[..], b"body 3");

    let ranged = s3
        .get_object()
        .bucket(&bucket)
        .key("p/obj-3")
        .range("bytes=2-5")
        .send()
        .await
        .expect("ranged get_object");
    assert_eq!(
        &ranged.body.collect().await.unwrap().into_bytes()[..],
        b"dy 3"
    );

    // Two keys a page: three pages for five objects, in key order.
    let mut keys = Vec::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(&bucket)
            .prefix("p/")
            .max_keys(2)
            .set_continuation_token(token)
            .send()
            .await
            .expect("list_objects_v2");
        pages += 1;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
        token = page.next_continuation_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        keys,
        (0..5).map(|i| format!("p/obj-{i}")).collect::<Vec<_>>()
    );

    // Immutable objects: a second writer of the same name must fail, not overwrite.
    let second = s3
        .put_object()
        .bucket(&bucket)
        .key("p/obj-0")
        .if_none_match("*")
        .body(b"overwrite".to_vec().into())
        .send()
        .await;
    let err = second.expect_err("If-None-Match: * on an existing key must fail");
    let status = err.raw_response().map(|r| r.status().as_u16());
    assert_eq!(status, Some(412), "{err:?}");
    let kept = s3
        .get_object()
        .bucket(&bucket)
        .key("p/obj-0")
        .send()
        .await
        .unwrap();
    assert_eq!(
        &kept.body.collect().await.unwrap().into_bytes()[..],
        b"body 0"
    );

    for key in keys {
        s3.delete_object()
            .bucket(&bucket)
            .key(key)
            .send()
            .await
            .unwrap();
    }
    s3.delete_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("delete the empty bucket");
}

/// Produces to a fresh topic, consumes with a consumer group that commits, and reads the group's
/// committed offset back, as the agent's Kafka capture will.
#[tokio::test]
async fn kafka_produce_consume_and_read_committed_offsets() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::{Message, Offset, TopicPartitionList};

    let bootstrap = kafka_bootstrap();
    let topic = unique_name("smoke-topic");
    let group = unique_name("smoke-group");

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("kafka admin client");
    let created = admin
        .create_topics(
            &[NewTopic::new(&topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("create topic request");
    for r in created {
        r.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
    }

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("message.timeout.ms", "10000")
        .create()
        .expect("kafka producer");
    for i in 0..10 {
        producer
            .send(
                FutureRecord::to(&topic)
                    .key(&format!("k{i}"))
                    .payload(&format!("v{i}")),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("produce message {i}: {e}"));
    }

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("kafka consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    let mut seen = Vec::new();
    while seen.len() < 7 {
        let msg = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("a message within 30 s")
            .expect("consume");
        seen.push(String::from_utf8(msg.payload().unwrap().to_vec()).unwrap());
        consumer
            .commit_message(&msg, CommitMode::Sync)
            .expect("commit");
    }
    assert_eq!(seen, (0..7).map(|i| format!("v{i}")).collect::<Vec<_>>());
    drop(consumer);

    // Read the committed offset from outside the group, as the agent does.
    let reader: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", &group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&topic, 0);
    let committed =
        tokio::task::spawn_blocking(move || reader.committed_offsets(tpl, Duration::from_secs(10)))
            .await
            .unwrap()
            .expect("fetch committed offsets");
    let offset = committed.find_partition(&topic, 0).unwrap().offset();
    // The committed offset is the next message to read: 7 after consuming offsets 0..=6.
    assert_eq!(offset, Offset::Offset(7));

    admin
        .delete_topics(&[&topic], &AdminOptions::new())
        .await
        .expect("delete topic");
}

/// SET/GET and the `SET NX PX` lease primitive on the real Redis.
#[tokio::test]
async fn redis_set_get_and_lease_primitive() {
    use redis::AsyncCommands;

    let url = redis_url();
    let client = redis::Client::open(url.as_str()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("connect to redis at {url}: {e}; {SERVICES_HINT}"));
    let prefix = unique_name("smoke");

    let key = format!("{prefix}:greeting");
    let _: () = conn.set(&key, "hello").await.unwrap();
    let got: String = conn.get(&key).await.unwrap();
    assert_eq!(got, "hello");

    let lease = format!("{prefix}:lease");
    let first: Option<String> = redis::cmd("SET")
        .arg(&lease)
        .arg("holder-a")
        .arg("NX")
        .arg("PX")
        .arg(30_000)
        .query_async(&mut conn)
        .await
        .unwrap();
    let second: Option<String> = redis::cmd("SET")
        .arg(&lease)
        .arg("holder-b")
        .arg("NX")
        .arg("PX")
        .arg(30_000)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(first.as_deref(), Some("OK"));
    assert_eq!(second, None, "a held lease is not taken twice");
    let holder: String = conn.get(&lease).await.unwrap();
    assert_eq!(holder, "holder-a");

    let _: () = conn.del(&[&key, &lease]).await.unwrap();
}
