//! The two libpg_query functions used, declared by hand from `libpg_query/pg_query.h` (no
//! bindgen, so no libclang at build time).
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, CStr, CString};

use crate::ParseError;

/// `PgQueryError`.
#[repr(C)]
struct PgQueryError {
    message: *mut c_char,
    funcname: *mut c_char,
    filename: *mut c_char,
    lineno: c_int,
    cursorpos: c_int,
    context: *mut c_char,
}

/// `PgQueryParseResult`.
#[repr(C)]
struct PgQueryParseResult {
    parse_tree: *mut c_char,
    stderr_buffer: *mut c_char,
    error: *mut PgQueryError,
}

extern "C" {
    fn pg_query_parse(input: *const c_char) -> PgQueryParseResult;
    fn pg_query_free_parse_result(result: PgQueryParseResult);
}

/// Parses `sql` into libpg_query's JSON parse tree.
pub(crate) fn parse(sql: &str) -> Result<String, ParseError> {
    let Ok(input) = CString::new(sql) else {
        return Err(ParseError {
            message: "a NUL byte in the statement".into(),
            position: None,
        });
    };
    // SAFETY: `input` is a NUL-terminated string that outlives the call. libpg_query keeps
    // its memory contexts per thread, so calls from several threads at once are safe.
    let result = unsafe { pg_query_parse(input.as_ptr()) };
    // SAFETY: the result's pointers are NULL or NUL-terminated strings (and an error struct)
    // that libpg_query allocated and that stay valid until the result is freed below, once.
    let out = unsafe {
        if let Some(e) = result.error.as_ref() {
            let message = if e.message.is_null() {
                "unknown parse error".to_string()
            } else {
                CStr::from_ptr(e.message).to_string_lossy().into_owned()
            };
            Err(ParseError {
                message,
                position: usize::try_from(e.cursorpos).ok().filter(|&p| p > 0),
            })
        } else if result.parse_tree.is_null() {
            Err(ParseError {
                message: "no parse tree".into(),
                position: None,
            })
        } else {
            Ok(CStr::from_ptr(result.parse_tree)
                .to_string_lossy()
                .into_owned())
        }
    };
    // SAFETY: the result came from pg_query_parse and is freed exactly once.
    unsafe { pg_query_free_parse_result(result) };
    out
}
