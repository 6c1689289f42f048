//! Hand-written statements that a connection prepares once and then reuses.
//!
//! diesel caches the prepared statements of its query builder, but never those of
//! `sql_query` (it cannot tell whether the text is built from data). The hot paths' batch
//! statements are constant text with bind parameters, so planning them every round (up to
//! milliseconds for the dispatcher's claim) is wasted: [`PreparedExt::prepared`] marks such a
//! query cacheable, keyed by its SQL text and bind types on each connection.
//!
//! Only for statements whose text is a constant: every distinct text stays in the
//! connection's cache.

use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};

/// A raw SQL query (`diesel::sql_query(..).bind(..)`) that is safe to prepare once per
/// connection because its text never changes.
#[derive(Debug, Clone, Copy)]
pub struct Prepared<Q>(Q);

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Prepared<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &Pg) -> QueryResult<bool> {
        Ok(true)
    }
}

// No static id: the cache is keyed by the SQL text and the bind types instead.
impl<Q> QueryId for Prepared<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Prepared<Q> {
    type SqlType = Q::SqlType;
}

/// `.prepared()` on a `sql_query` whose text is a constant.
pub trait PreparedExt: Sized {
    fn prepared(self) -> Prepared<Self> {
        Prepared(self)
    }
}

impl<Q: QueryFragment<Pg>> PreparedExt for Q {}
