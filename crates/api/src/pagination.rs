//! Cursor pagination: `?limit=N&cursor=C`, answered with `next_cursor` while more remain.
//! Ids are UUIDv7 (time-ordered), so the cursor is simply the last id returned; it stays
//! correct while rows are inserted or deleted between pages.

use paperclip::actix::Apiv2Schema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ApiError;

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 500;

#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub after: Option<Uuid>,
    pub limit: i64,
}

impl PageRequest {
    pub fn new(limit: Option<i64>, cursor: Option<&str>) -> Result<Self, ApiError> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::invalid(
                "limit",
                format!("must be between 1 and {MAX_LIMIT}"),
            ));
        }
        let after = cursor
            .filter(|c| !c.is_empty())
            .map(|c| {
                Uuid::parse_str(c)
                    .map_err(|_| ApiError::invalid("cursor", "not a cursor from a previous page"))
            })
            .transpose()?;
        Ok(Self { after, limit })
    }

    /// Rows to fetch: one more than the page, to know whether another page follows.
    pub fn fetch(&self) -> i64 {
        self.limit + 1
    }

    pub fn finish<T>(&self, mut rows: Vec<T>, id: impl Fn(&T) -> Uuid) -> (Vec<T>, Option<String>) {
        let more = rows.len() as i64 > self.limit;
        rows.truncate(self.limit as usize);
        let next = more
            .then(|| rows.last().map(|r| id(r).to_string()))
            .flatten();
        (rows, next)
    }
}

/// Checks a listing's `status` filter against the values the column can hold.
pub fn check_status_filter(status: Option<&str>, allowed: &[&str]) -> Result<(), ApiError> {
    match status {
        Some(status) if !allowed.contains(&status) => Err(ApiError::invalid(
            "status",
            format!("must be one of {}", allowed.join(", ")),
        )),
        _ => Ok(()),
    }
}

/// One page of a listing.
#[derive(Debug, Serialize, Deserialize, Apiv2Schema)]
pub struct Page<T> {
    pub data: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}
