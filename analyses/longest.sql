-- longest: the 20 records with the most characters in instruction + input + output.
SELECT row_number() OVER (ORDER BY length(instruction) + length("input") + length(output) DESC, instruction) AS rank,
       length(instruction) + length("input") + length(output) AS chars,
       left(instruction, 80) AS instruction,
       length("input") AS input_chars,
       length(output) AS output_chars
FROM (
    SELECT * FROM records
    ORDER BY length(instruction) + length("input") + length(output) DESC, instruction
    LIMIT 20
)
ORDER BY rank;
