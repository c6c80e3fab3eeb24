"""SQL, a module per table: a row dataclass and async functions named by their SQL verb
(`select_`, `insert_`, `update_`, `delete_`). No business rules here."""
