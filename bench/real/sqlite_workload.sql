-- bench/real/sqlite_workload.sql — the `real` suite's sqlite3 case (~1 s here).
-- Run on an in-memory database with the row count in a table made first:
--     sqlite3 :memory: -cmd 'CREATE TABLE param AS SELECT 100000 AS n' < sqlite_workload.sql
-- Inserts rows of generated text, indexes them, groups, joins, updates and deletes: SQLite's page
-- cache, statements and result rows all come from malloc.
CREATE TABLE item(id INTEGER PRIMARY KEY, name TEXT, grp INTEGER, price REAL, note TEXT);
INSERT INTO item(name, grp, price, note)
  WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < (SELECT n FROM param))
  SELECT printf('item-%08x', (i * 2654435761) % 4294967296), i % 997, (i % 1000) / 7.0,
         substr(printf('%x%x%x', i * 2654435761, i * 40503, i * 97), 1, 10 + i % 30)
  FROM seq;
CREATE INDEX item_name ON item(name);
CREATE INDEX item_grp ON item(grp, price);
CREATE TABLE grp AS SELECT grp, count(*) AS n, avg(price) AS mean, group_concat(substr(name, 6, 2), '') AS tags
  FROM item GROUP BY grp;
SELECT count(*), sum(n), round(sum(mean), 3), sum(length(tags)) FROM grp;
SELECT count(*) FROM item JOIN grp USING (grp) WHERE item.price > grp.mean;
UPDATE item SET note = note || upper(note) WHERE id % 3 = 0;
DELETE FROM item WHERE grp % 4 = 1;
SELECT count(*), sum(length(note)) FROM item;
SELECT name FROM item ORDER BY note, name LIMIT 1 OFFSET 1000;
