//! raft-rs's messages and entries carry prost 0.11 types; they cross our
//! wire and disk as bytes in that encoding.

use prost011::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Message};

#[derive(Debug, thiserror::Error)]
#[error("cannot decode a raft {what}: {reason}")]
pub struct DecodeError {
    what: &'static str,
    reason: String,
}

pub fn encode_message(message: &Message) -> Vec<u8> {
    message.encode_to_vec()
}

pub fn decode_message(bytes: &[u8]) -> Result<Message, DecodeError> {
    Message::decode(bytes).map_err(|e| DecodeError {
        what: "message",
        reason: e.to_string(),
    })
}

/// Appends the entry's encoding to `out`.
pub fn encode_entry_into(entry: &Entry, out: &mut Vec<u8>) {
    entry.encode(out).expect("a Vec grows to fit");
}

pub fn decode_entry(bytes: &[u8]) -> Result<Entry, DecodeError> {
    Entry::decode(bytes).map_err(|e| DecodeError {
        what: "log entry",
        reason: e.to_string(),
    })
}

pub fn encode_hard_state(state: &HardState) -> Vec<u8> {
    state.encode_to_vec()
}

pub fn decode_hard_state(bytes: &[u8]) -> Result<HardState, DecodeError> {
    HardState::decode(bytes).map_err(|e| DecodeError {
        what: "hard state",
        reason: e.to_string(),
    })
}

pub fn encode_conf_state(state: &ConfState) -> Vec<u8> {
    state.encode_to_vec()
}

pub fn decode_conf_state(bytes: &[u8]) -> Result<ConfState, DecodeError> {
    ConfState::decode(bytes).map_err(|e| DecodeError {
        what: "conf state",
        reason: e.to_string(),
    })
}
