-- duplicates: instructions that occur more than once (after trimming and lower-casing), most frequent first.
SELECT lower(trim(regexp_replace(instruction, '\s+', ' ', 'g'))) AS normalised_instruction,
       count(*) AS copies,
       count(DISTINCT output) AS distinct_outputs
FROM records
GROUP BY 1
HAVING count(*) > 1
ORDER BY copies DESC, normalised_instruction
LIMIT 50;
