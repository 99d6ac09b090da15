//! [`Dispatcher`]: typed handlers, one per message type, with serde types
//! for the data.

use std::collections::HashMap;
use std::fmt;

use rusqlite::Transaction;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::message::Message;

/// What a [`Dispatcher`] does with a message type it has no handler for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum UnknownTypes {
    /// Treat it as handled (the consumer records it and moves on).
    #[default]
    Ignore,
    /// Fail with [`Error::InvalidInput`] naming the type (the consumer
    /// retries it and then applies its failure policy).
    Fail,
}

type TypedHandler = Box<dyn FnMut(&Message, &Transaction<'_>) -> Result<()> + Send>;

/// Maps message types to serde types and handler functions.
///
/// Each handler receives the message's data deserialized into its type, the
/// message itself, and the consumer's transaction. Data that does not
/// deserialize fails with [`Error::InvalidInput`] naming the type, the
/// message id and what did not match. Use it as a consumer's handler with
/// [`Dispatcher::into_handler`], and [`Dispatcher::types`] to let the store's
/// other types pass by.
///
/// ```
/// use std::time::Duration;
/// use eventodb_kit::consumer::Dispatcher;
/// use eventodb_kit::{Kit, MessageStore, NewMessage, WriteOptions};
/// use serde::Deserialize;
///
/// #[derive(Deserialize)]
/// struct UserCreated { name: String }
/// #[derive(Deserialize)]
/// struct UserRenamed { name: String }
///
/// let dir = tempfile::tempdir()?;
/// let kit = Kit::builder().database(dir.path().join("app.db")).build()?;
/// kit.db().write(|tx| Ok(tx.execute_batch("CREATE TABLE users (id TEXT PRIMARY KEY, name TEXT)")?))?;
///
/// let dispatcher = Dispatcher::new()
///     .on("UserCreated", |e: UserCreated, msg, tx| {
///         tx.execute("INSERT INTO users VALUES (?1, ?2)", (&msg.stream_name, &e.name))?;
///         Ok(())
///     })
///     .on("UserRenamed", |e: UserRenamed, msg, tx| {
///         tx.execute("UPDATE users SET name = ?2 WHERE id = ?1", (&msg.stream_name, &e.name))?;
///         Ok(())
///     });
///
/// let new = |t: &str, name: &str| NewMessage::new(t, serde_json::json!({ "name": name }));
/// kit.store().write("user-1", &new("UserCreated", "ann"), &WriteOptions::new())?;
/// let last = kit.store().write("user-1", &new("UserRenamed", "anne"), &WriteOptions::new())?;
///
/// let consumer = kit
///     .consumer("user", "users-table")
///     .types(dispatcher.types())
///     .spawn(dispatcher.into_handler())?;
/// consumer.wait_for_position(last.global_position, Duration::from_secs(10))?;
/// let name: String = kit.db().read(|c| Ok(c.query_row("SELECT name FROM users", [], |r| r.get(0))?))?;
/// assert_eq!(name, "anne");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Default)]
pub struct Dispatcher {
    handlers: HashMap<String, TypedHandler>,
    unknown: UnknownTypes,
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field("types", &self.types())
            .field("unknown", &self.unknown)
            .finish()
    }
}

impl Dispatcher {
    /// An empty dispatcher that ignores unknown types.
    pub fn new() -> Self {
        Self::default()
    }

    /// Handles messages of type `message_type` with `handler`, which gets the
    /// data as a `T`. A second registration for the same type replaces the
    /// first.
    ///
    /// The handler returns the kit's [`Result`] (`?` works on the kit's,
    /// rusqlite's and serde_json's errors); its errors reach the consumer as
    /// they are, so they are classified by [`Error::disposition`].
    pub fn on<T, F>(mut self, message_type: impl Into<String>, mut handler: F) -> Self
    where
        T: DeserializeOwned,
        F: FnMut(T, &Message, &Transaction<'_>) -> Result<()> + Send + 'static,
    {
        let message_type = message_type.into();
        let typed: TypedHandler = Box::new(move |message, tx| {
            let event: T = message.data_as()?;
            handler(event, message, tx)
        });
        self.handlers.insert(message_type, typed);
        self
    }

    /// What to do with types that have no handler. Defaults to
    /// [`UnknownTypes::Ignore`].
    pub fn unknown_types(mut self, policy: UnknownTypes) -> Self {
        self.unknown = policy;
        self
    }

    /// The types with a handler, sorted (for [`ConsumerBuilder::types`](super::ConsumerBuilder::types)).
    pub fn types(&self) -> Vec<String> {
        let mut types: Vec<String> = self.handlers.keys().cloned().collect();
        types.sort();
        types
    }

    /// Runs the handler registered for `message`'s type.
    ///
    /// Errors: [`Error::InvalidInput`] when the data does not fit the type (or
    /// the type is unknown under [`UnknownTypes::Fail`]);
    /// the handler's own error.
    pub fn handle(&mut self, message: &Message, tx: &Transaction<'_>) -> Result<()> {
        match self.handlers.get_mut(&message.message_type) {
            Some(handler) => handler(message, tx),
            None => match self.unknown {
                UnknownTypes::Ignore => Ok(()),
                UnknownTypes::Fail => Err(Error::invalid(format!(
                    "no handler for message type {:?} (message {}); known types: {}",
                    message.message_type,
                    message.id,
                    self.types().join(", ")
                ))),
            },
        }
    }

    /// The dispatcher as a handler closure for
    /// [`ConsumerBuilder::spawn`](super::ConsumerBuilder::spawn) or
    /// [`Replay::run`](super::Replay::run).
    pub fn into_handler(
        mut self,
    ) -> impl FnMut(&Message, &Transaction<'_>) -> Result<()> + Send + 'static {
        move |message, tx| self.handle(message, tx)
    }
}
