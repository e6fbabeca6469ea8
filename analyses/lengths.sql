-- lengths: histogram of output word counts in buckets of 25 words (for spotting truncation and run-ons).
SELECT least(floor(CASE WHEN trim(output) = '' THEN 0 ELSE len(regexp_split_to_array(trim(output), '\s+')) END / 25) * 25, 500)::INT AS output_words_from,
       count(*) AS records
FROM records
GROUP BY 1
ORDER BY 1;
