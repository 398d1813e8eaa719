"""engine.config.sql: the read-only check and the select list, on T-SQL as DOMUS queries use it."""
from __future__ import annotations

import pytest

from engine.config.sql import check_read_only, select_columns


@pytest.mark.parametrize("query", [
    "SELECT o.ObjektNr, o.Bezeichnung FROM Objekt o",
    "SELECT TOP 100 [Objekt Nr] FROM dbo.Objekt WITH (NOLOCK) WHERE Mandant = :mandant",
    "WITH aktiv AS (SELECT * FROM Vertrag WHERE Ende IS NULL) SELECT VertragNr FROM aktiv",
    "SELECT a FROM t UNION ALL SELECT b FROM u",
    "SELECT a.DeleteFlag, 'UPDATE' AS Hinweis FROM Adresse a;",
    "SELECT CAST(Flaeche AS DECIMAL(10, 2)) AS Flaeche, ISNULL(Etage, '') AS Etage FROM Einheit",
])
def test_reading_queries_pass(query):
    assert check_read_only(query) is None


@pytest.mark.parametrize("query, message", [
    ("DELETE FROM Adresse", "the query must be a SELECT (or WITH ... SELECT), not DELETE: the sync only reads from the ERP"),
    ("UPDATE Adresse SET Email = NULL", "the query must be a SELECT (or WITH ... SELECT), not UPDATE: the sync only reads from the ERP"),
    ("INSERT INTO Log VALUES (1)", "the query must be a SELECT (or WITH ... SELECT), not INSERT: the sync only reads from the ERP"),
    ("MERGE INTO t USING s ON t.a = s.a WHEN MATCHED THEN DELETE;", "the query must be a SELECT (or WITH ... SELECT), not MERGE: the sync only reads from the ERP"),
    ("EXEC dbo.sp_Export", "the query must be a SELECT (or WITH ... SELECT), not EXEC: the sync only reads from the ERP"),
    ("DROP TABLE Adresse", "the query must be a SELECT (or WITH ... SELECT), not DROP: the sync only reads from the ERP"),
    ("TRUNCATE TABLE Adresse", "the query must be a SELECT (or WITH ... SELECT), not TRUNCATE: the sync only reads from the ERP"),
    ("SELECT 1 AS a; DELETE FROM Adresse", "the query holds 2 statements (SELECT, DELETE); write exactly one SELECT, without ';' between statements"),
    ("SELECT 1 AS a; SELECT 2 AS b", "the query holds 2 statements (SELECT, SELECT); write exactly one SELECT, without ';' between statements"),
    ("WITH x AS (DELETE FROM t OUTPUT deleted.a) SELECT a FROM x", "the query contains DELETE inside a WITH clause: only a reading SELECT is allowed"),
    ("SELECT a INTO Kopie FROM t", "the query uses SELECT ... INTO, which creates a table: the sync only reads from the ERP"),
    ("SELECT a FROM t WHERE EXISTS (DELETE FROM t)", "the query contains DELETE: only a reading SELECT is allowed"),
    ("SELEC a FROM t", "the query is not valid T-SQL: invalid expression / unexpected token near 'FROM'"),
    ("", "the query is empty: write one SELECT"),
])
def test_writing_or_broken_queries_are_refused(query, message):
    assert check_read_only(query) == message


@pytest.mark.parametrize("query, columns", [
    ("SELECT o.ObjektNr, o.Bezeichnung AS Name, Nr = o.HausNr FROM Objekt o", ["ObjektNr", "Name", "Nr"]),
    ("SELECT [Objekt Nr], \"Ort\" FROM Objekt", ["Objekt Nr", "Ort"]),
    ("SELECT a, b + 1, c FROM t", ["a", "c"]),                         # an unnamed expression has no usable name
    ("WITH x AS (SELECT a, b FROM t) SELECT b FROM x", ["b"]),
    ("SELECT a AS x FROM t UNION SELECT b FROM u", ["x"]),              # the first SELECT names the columns
    ("SELECT * FROM t", None),
    ("SELECT o.*, e.EinheitID FROM Objekt o JOIN Einheit e ON e.ObjektNr = o.ObjektNr", None),
])
def test_select_columns(query, columns):
    assert select_columns(query) == columns


def test_select_columns_of_a_broken_query_raises():
    with pytest.raises(ValueError):
        select_columns("SELEC a FROM t")
