-- overview: size, share with input, and word counts (mean / median / p95 / max) of each field.
WITH words AS (
    SELECT
        CASE WHEN trim(instruction) = '' THEN 0 ELSE len(regexp_split_to_array(trim(instruction), '\s+')) END AS instruction_words,
        CASE WHEN trim("input") = '' THEN 0 ELSE len(regexp_split_to_array(trim("input"), '\s+')) END AS input_words,
        CASE WHEN trim(output) = '' THEN 0 ELSE len(regexp_split_to_array(trim(output), '\s+')) END AS output_words,
        trim("input") <> '' AS has_input
    FROM records
)
SELECT 'instruction' AS field, count(*) AS records, round(avg(has_input::INT), 4) AS share_with_input,
       round(avg(instruction_words), 2) AS mean_words, median(instruction_words) AS median_words,
       round(quantile_cont(instruction_words, 0.95), 2) AS p95_words, max(instruction_words) AS max_words
FROM words
UNION ALL
SELECT 'input', count(*), round(avg(has_input::INT), 4), round(avg(input_words), 2), median(input_words),
       round(quantile_cont(input_words, 0.95), 2), max(input_words)
FROM words
UNION ALL
SELECT 'output', count(*), round(avg(has_input::INT), 4), round(avg(output_words), 2), median(output_words),
       round(quantile_cont(output_words, 0.95), 2), max(output_words)
FROM words;
