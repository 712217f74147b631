//! Batched reads for capture at scale: the committed offsets of many groups and the watermarks
//! of many partitions, each in a handful of requests instead of one (or two) per group and per
//! partition.
//!
//! - Committed offsets use the Admin API's ListConsumerGroupOffsets (KIP-88 OffsetFetch with
//!   "all partitions"): one request per group, all in flight at once on one client, and the
//!   broker answers with exactly the partitions the group has committed. The per-group consumer
//!   path (`KafkaClient::committed`) must name every partition of the cluster in every request
//!   and needs a client (threads, connections) per group. rdkafka 0.39 has no safe wrapper for
//!   this call, so it is made through `rdkafka::bindings`; every raw handle is owned by a guard
//!   that frees it.
//! - Watermarks use ListOffsets through `offsets_for_times` with the protocol's special times
//!   `-2` (earliest) and `-1` (latest): librdkafka groups the partitions by leader, so a cycle
//!   costs two requests per broker.

// Reviewed exception to the workspace's `unsafe_code = "deny"`: rdkafka has no safe wrapper for
// ListConsumerGroupOffsets, so this module calls librdkafka's C API through `rdkafka::bindings`.
// Every raw handle is owned by a guard that frees it, and every `unsafe` block says why it holds.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::ffi::{c_char, CStr, CString};
use std::time::{Duration, Instant};

use rdkafka::bindings as rd;
use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};

use super::{Committed, KafkaClient, KafkaError};

/// Committed offsets per group: (topic, partition) → offset.
pub type GroupOffsets = BTreeMap<String, Vec<(String, Committed)>>;

/// (low, high) watermarks per (topic, partition).
pub type Watermarks = BTreeMap<(String, i32), (i64, i64)>;

impl KafkaClient {
    /// The committed offsets of every group in `groups`, each sorted by (topic, partition).
    /// A group the cluster does not know comes back with no partitions. Partitions of internal
    /// topics (`__…`) are left out, like [`KafkaClient::topics`] leaves them out.
    pub fn committed_of_groups(&self, groups: &[String]) -> Result<GroupOffsets, KafkaError> {
        if groups.is_empty() {
            return Ok(GroupOffsets::new());
        }
        let rk = self.meta.client().native_ptr();
        // Every request carries the timeout; the slack lets the last answers arrive.
        let deadline = Instant::now() + self.timeout + Duration::from_secs(1);
        let queue = Queue::new(rk);
        let options = AdminOptions::new(rk, self.timeout)
            .map_err(|e| self.op_err("preparing ListConsumerGroupOffsets", e))?;
        let mut names = Vec::with_capacity(groups.len());
        for group in groups {
            let name = CString::new(group.as_str()).map_err(|_| {
                self.op_err(
                    format!("reading committed offsets of group {group:?}"),
                    "the group name contains a NUL byte",
                )
            })?;
            names.push(name);
        }
        for name in &names {
            // SAFETY: `name` outlives the call; a null partition list asks for every partition
            // the group committed. librdkafka copies the request and the options, so both are
            // freed right after (the request here, the options by their guard).
            unsafe {
                let mut request =
                    rd::rd_kafka_ListConsumerGroupOffsets_new(name.as_ptr(), std::ptr::null());
                rd::rd_kafka_ListConsumerGroupOffsets(rk, &mut request, 1, options.0, queue.0);
                rd::rd_kafka_ListConsumerGroupOffsets_destroy(request);
            }
        }
        let mut out = GroupOffsets::new();
        let mut first_error: Option<KafkaError> = None;
        for _ in 0..groups.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = queue.poll(left).ok_or_else(|| {
                self.op_err(
                    "reading committed offsets of consumer groups",
                    format!(
                        "no answer for {} of {} groups within {:?}",
                        groups.len() - out.len(),
                        groups.len(),
                        self.timeout
                    ),
                )
            })?;
            match read_group_results(&event) {
                Ok(results) => {
                    for (group, result) in results {
                        match result {
                            Ok(mut offsets) => {
                                offsets.sort_by(|a, b| {
                                    (&a.0, a.1.partition).cmp(&(&b.0, b.1.partition))
                                });
                                out.insert(group, offsets);
                            }
                            Err(detail) => {
                                first_error.get_or_insert_with(|| {
                                    self.op_err(
                                        format!("reading committed offsets of group {group}"),
                                        detail,
                                    )
                                });
                            }
                        }
                    }
                }
                Err(detail) => {
                    first_error.get_or_insert_with(|| {
                        self.op_err("reading committed offsets of consumer groups", detail)
                    });
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// The (low, high) watermarks of every partition in `partitions`, in two ListOffsets
    /// requests per broker.
    pub fn watermarks_of(&self, partitions: &[(String, i32)]) -> Result<Watermarks, KafkaError> {
        if partitions.is_empty() {
            return Ok(Watermarks::new());
        }
        let list = |chunk: &[(String, i32)],
                    at: Offset|
         -> Result<BTreeMap<(String, i32), i64>, KafkaError> {
            let mut tpl = TopicPartitionList::with_capacity(chunk.len());
            for (topic, partition) in chunk {
                tpl.add_partition_offset(topic, *partition, at)
                    .map_err(|e| self.op_err("reading partition watermarks", e))?;
            }
            let answer = self
                .meta
                .offsets_for_times(tpl, self.timeout)
                .map_err(|e| self.op_err("reading partition watermarks", e))?;
            answer
                .elements()
                .iter()
                .map(|e| {
                    let what = format!("reading watermarks of {}/{}", e.topic(), e.partition());
                    e.error().map_err(|err| self.op_err(&what, err))?;
                    match e.offset() {
                        Offset::Offset(o) => Ok(((e.topic().to_owned(), e.partition()), o)),
                        other => {
                            Err(self.op_err(&what, format!("no offset in the answer ({other:?})")))
                        }
                    }
                })
                .collect()
        };
        let (mut low, mut high) = (BTreeMap::new(), BTreeMap::new());
        for chunk in partitions.chunks(WATERMARK_CHUNK) {
            low.append(&mut list(chunk, Offset::Beginning)?);
            high.append(&mut list(chunk, Offset::End)?);
        }
        partitions
            .iter()
            .map(|(topic, partition)| {
                let key = (topic.clone(), *partition);
                match (low.get(&key), high.get(&key)) {
                    (Some(l), Some(h)) => Ok((key, (*l, *h))),
                    _ => Err(self.op_err(
                        format!("reading watermarks of {topic}/{partition}"),
                        "the broker left the partition out of its answer",
                    )),
                }
            })
            .collect()
    }
}

/// Partitions per ListOffsets call. librdkafka's handling of one call grows with the square of
/// its partitions (1.8 s for 10 000 here); in chunks of this size it stays linear.
const WATERMARK_CHUNK: usize = 500;

/// Result per group of one ListConsumerGroupOffsets event.
type GroupResults = Vec<(String, Result<Vec<(String, Committed)>, String>)>;

fn read_group_results(event: &Event) -> Result<GroupResults, String> {
    // SAFETY: `event` is a live event from our admin queue; the pointers read here belong to it
    // and are only read while it lives (the strings are copied out).
    unsafe {
        let err = rd::rd_kafka_event_error(event.0);
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(c_string(rd::rd_kafka_event_error_string(event.0)));
        }
        let result = rd::rd_kafka_event_ListConsumerGroupOffsets_result(event.0);
        if result.is_null() {
            return Err("the answer was not a ListConsumerGroupOffsets result".into());
        }
        let mut count = 0usize;
        let groups = rd::rd_kafka_ListConsumerGroupOffsets_result_groups(result, &mut count);
        let mut out = Vec::with_capacity(count);
        for i in 0..count {
            let group = *groups.add(i);
            let name = c_string(rd::rd_kafka_group_result_name(group));
            let error = rd::rd_kafka_group_result_error(group);
            if !error.is_null() {
                out.push((name, Err(c_string(rd::rd_kafka_error_string(error)))));
                continue;
            }
            let list = rd::rd_kafka_group_result_partitions(group);
            let mut offsets = Vec::new();
            if !list.is_null() {
                let list = &*list;
                let len = usize::try_from(list.cnt).unwrap_or(0);
                for j in 0..len {
                    let p = &*list.elems.add(j);
                    let topic = c_string(p.topic);
                    if p.err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
                        || p.offset < 0
                        || topic.starts_with("__")
                    {
                        continue;
                    }
                    offsets.push((
                        topic,
                        Committed {
                            partition: p.partition,
                            offset: p.offset,
                        },
                    ));
                }
            }
            out.push((name, Ok(offsets)));
        }
        Ok(out)
    }
}

/// Copies a C string librdkafka owns; null reads as empty.
///
/// # Safety
/// `s` is null or a valid NUL-terminated string.
unsafe fn c_string(s: *const c_char) -> String {
    if s.is_null() {
        String::new()
    } else {
        CStr::from_ptr(s).to_string_lossy().into_owned()
    }
}

/// An admin result queue, destroyed on drop.
struct Queue(*mut rd::rd_kafka_queue_t);

impl Queue {
    fn new(rk: *mut rd::rd_kafka_t) -> Self {
        // SAFETY: `rk` is the live handle of the client that owns this call.
        Self(unsafe { rd::rd_kafka_queue_new(rk) })
    }

    fn poll(&self, timeout: Duration) -> Option<Event> {
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: the queue is live; a null result means the timeout passed.
        let event = unsafe { rd::rd_kafka_queue_poll(self.0, ms) };
        (!event.is_null()).then_some(Event(event))
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        // SAFETY: created by rd_kafka_queue_new and destroyed once, here.
        unsafe { rd::rd_kafka_queue_destroy(self.0) }
    }
}

/// An admin event, destroyed on drop.
struct Event(*mut rd::rd_kafka_event_t);

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: returned by rd_kafka_queue_poll and destroyed once, here.
        unsafe { rd::rd_kafka_event_destroy(self.0) }
    }
}

/// Admin options for ListConsumerGroupOffsets, destroyed on drop.
struct AdminOptions(*mut rd::rd_kafka_AdminOptions_t);

impl AdminOptions {
    fn new(rk: *mut rd::rd_kafka_t, timeout: Duration) -> Result<Self, String> {
        // SAFETY: `rk` is live; the options are owned by the guard from here on.
        let options = Self(unsafe {
            rd::rd_kafka_AdminOptions_new(
                rk,
                rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS,
            )
        });
        if options.0.is_null() {
            return Err("librdkafka refused to create admin options".into());
        }
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        let mut errstr = [0 as c_char; 256];
        // SAFETY: `errstr` is a writable buffer of the size passed.
        let err = unsafe {
            rd::rd_kafka_AdminOptions_set_request_timeout(
                options.0,
                ms,
                errstr.as_mut_ptr(),
                errstr.len(),
            )
        };
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            // SAFETY: librdkafka NUL-terminates the message within the buffer.
            return Err(unsafe { c_string(errstr.as_ptr()) });
        }
        Ok(options)
    }
}

impl Drop for AdminOptions {
    fn drop(&mut self) {
        // SAFETY: created by rd_kafka_AdminOptions_new and destroyed once, here.
        unsafe { rd::rd_kafka_AdminOptions_destroy(self.0) }
    }
}
