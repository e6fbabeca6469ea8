"""The demo teacher's task bank: original tasks written for this project, plus tasks composed from
families (a few phrasings x long, content-bearing fillers) so instructions differ enough for the ROUGE
filter to keep many of them. Everything is plain text, deterministic and importable without I/O.
"""
from __future__ import annotations

from functools import lru_cache

from alpaca_data.generate.task_bank_more import MORE_TASKS  # more original tasks, in their own module

N = ""  # no input

# (instruction, input, output)
STANDALONE: list[tuple[str, str, str]] = [
    ("Rewrite the sentence in the passive voice.", "The committee approved the new budget on Friday.",
     "The new budget was approved by the committee on Friday."),
    ("Suggest a name for a bakery that specialises in sourdough bread.", N,
     "Wild Rise Bakehouse: it hints at the wild yeast used in sourdough and sounds warm and local."),
    ("Classify each animal as a mammal, bird, reptile or fish.", "salmon, crocodile, bat, penguin",
     "salmon: fish\ncrocodile: reptile\nbat: mammal\npenguin: bird"),
    ("Find the grammatical error in the sentence and correct it.", "Each of the students have finished their essay.",
     "The verb should agree with \"each\", which is singular: \"Each of the students has finished their essay.\""),
    ("Write a Python function that returns the largest even number in a list, or None if there is none.", N,
     "def largest_even(numbers):\n    evens = [n for n in numbers if n % 2 == 0]\n    return max(evens) if evens else None"),
    ("How many minutes are there in three and a half hours?", N,
     "Three and a half hours is 3.5 x 60 = 210 minutes."),
    ("Turn the list of facts into one flowing sentence.",
     "- The bridge opened in 1932.\n- It spans 503 metres.\n- It carries eight lanes of traffic.",
     "Opened in 1932, the 503-metre bridge carries eight lanes of traffic."),
    ("Identify the tone of the customer review.", "I waited forty minutes for a cold pizza. Never again.",
     "The tone is angry and disappointed."),
    ("Propose three questions a job candidate could ask at the end of an interview.", N,
     ("1. What does success look like in this role after six months?\n2. How does the team share feedback?\n"
     "3. What is the biggest challenge the team faces this year?")),
    ("Summarise the paragraph in no more than fifteen words.",
     ("Urban beekeeping has grown quickly over the last decade. Rooftop hives supply local honey, and the bees "
     "pollinate gardens and parks across the city, although experts warn that too many hives can strain the "
     "flowers available to wild pollinators."),
     "City beekeeping is booming and helps gardens, but too many hives can starve wild pollinators."),
    ("Decide whether the statement is a fact or an opinion.", "Chess is the most interesting game ever invented.",
     "Opinion. It expresses a personal judgement that cannot be proven true or false."),
    ("Write a polite email declining an invitation to speak at a conference.", N,
     ("Dear Dr. Lane,\n\nThank you for inviting me to speak at this year's conference. Unfortunately, a prior "
     "commitment keeps me from attending. I hope the event goes well and would be glad to be considered "
     "another year.\n\nBest regards,\nSam")),
    ("Explain the difference between \"affect\" and \"effect\" with one example of each.", N,
     ("\"Affect\" is usually a verb meaning to influence: The rain affected our plans. \"Effect\" is usually a "
     "noun meaning a result: The rain had a big effect on our plans.")),
    ("Generate a riddle whose answer is \"a shadow\".", N,
     "I follow you all day but vanish at night; the brighter the sun, the sharper I get. What am I?"),
    ("Calculate the total cost of the order including a 10% tax.", "3 notebooks at $4 each, 2 pens at $1.50 each",
     "Subtotal: 3 x $4 + 2 x $1.50 = $15. Tax: $1.50. Total: $16.50."),
    ("Reorder the steps so that the recipe makes sense.",
     "Serve the pancakes. Mix flour, eggs and milk. Pour batter into a hot pan. Flip when bubbles appear.",
     ("1. Mix flour, eggs and milk.\n2. Pour batter into a hot pan.\n3. Flip when bubbles appear.\n"
     "4. Serve the pancakes.")),
    ("What would be a good first step for someone who wants to start running regularly?", N,
     ("Start with short run-walk sessions, such as one minute running and two minutes walking for twenty "
     "minutes, three times a week, and build up gradually.")),
    ("Extract all the dates mentioned in the text.",
     ("The lease starts on 1 March 2024 and the first inspection is due on 15 June 2024, with renewal by "
     "28 February 2025."),
     "1 March 2024, 15 June 2024, 28 February 2025"),
    ("Convert the sentence into a question that could be answered by it.",
     "The Amazon River flows through Brazil, Peru and Colombia.",
     "Which countries does the Amazon River flow through?"),
    ("Come up with a slogan for a campaign that encourages people to repair old clothes.", N,
     "Mend it, don't end it."),
    ("Write a SQL query that counts the orders placed by each customer in the table `orders`.", N,
     "SELECT customer_id, COUNT(*) AS order_count\nFROM orders\nGROUP BY customer_id;"),
    ("Rate the difficulty of the math problem as easy, medium or hard, and justify your rating.",
     "Find all real x such that x^2 - 5x + 6 = 0.",
     "Easy. It is a quadratic that factors directly as (x - 2)(x - 3) = 0, so x = 2 or x = 3."),
    ("List four ways a small café could reduce its food waste.", N,
     ("1. Track what goes unsold each day and adjust orders.\n2. Offer end-of-day discounts.\n"
     "3. Use leftover bread in croutons or puddings.\n4. Donate surplus food to a local charity.")),
    ("Paraphrase the sentence using simpler words.",
     "The municipality intends to ameliorate the condition of deteriorating thoroughfares.",
     "The city plans to fix roads that are falling apart."),
    ("Is the following argument valid? Explain briefly.",
     "All cats are animals. My pet is an animal. Therefore my pet is a cat.",
     "No. Being an animal does not make something a cat; the argument affirms the consequent."),
    ("Write the opening line of a mystery novel set in a lighthouse.", N,
     ("The lamp had turned every night for ninety years, so when it went dark at 2:14 a.m., the whole island "
     "woke up.")),
    ("Give a one-sentence definition of opportunity cost.", N,
     "Opportunity cost is the value of the best alternative you give up when you make a choice."),
    ("Detect the language of each phrase.", "gracias\ndanke schön\nmerci beaucoup\nobrigado",
     "gracias: Spanish\ndanke schön: German\nmerci beaucoup: French\nobrigado: Portuguese"),
    ("Fix the bug in the JavaScript function.", "function add(a, b) {\n  return a - b;\n}",
     "The function subtracts instead of adding. Fixed version:\nfunction add(a, b) {\n  return a + b;\n}"),
    ("Brainstorm five names for a podcast about personal finance for students.", N,
     "1. Broke No More\n2. Campus Cash\n3. The Ramen Budget\n4. Future You Thanks You\n5. Interest Rates & Instant Noodles"),
    ("Describe the smell of fresh rain to someone who has never experienced it.", N,
     ("It is earthy and clean, a little like damp soil and cut stems, with a cool freshness that makes the "
     "air feel washed.")),
    ("Determine whether the number is prime.", "91",
     "91 is not prime, because 91 = 7 x 13."),
    ("Create a short packing checklist for a weekend camping trip.", N,
     ("Tent, sleeping bag, sleeping mat, headlamp, water bottle, stove and fuel, easy meals, warm layer, "
     "rain jacket, first-aid kit, and a bag for rubbish.")),
    ("Explain what the proverb means.", "Don't count your chickens before they hatch.",
     "Do not rely on a good outcome before it has actually happened."),
    ("Convert the temperature from Fahrenheit to Celsius.", "68°F",
     "68°F is (68 - 32) x 5/9 = 20°C."),
    ("Write a limerick about a forgetful robot.", N,
     ("A robot named Pete from Peru\nForgot what he'd programmed to do.\nHe'd start with a plan,\n"
     "Then stop and he'd scan,\nAnd finish by starting anew.")),
    ("Group the words into two categories and name each category.", "oak, violin, maple, cello, birch, flute",
     "Trees: oak, maple, birch\nMusical instruments: violin, cello, flute"),
    ("Answer the question using only the information in the passage.",
     ("Passage: The museum is open from 9 a.m. to 5 p.m. on weekdays and from 10 a.m. to 4 p.m. on weekends. "
     "Entry is free on the first Sunday of every month.\nQuestion: When can I visit for free?"),
     "You can visit for free on the first Sunday of every month, between 10 a.m. and 4 p.m."),
    ("Suggest a healthier substitute for each ingredient.", "white rice, sour cream, potato chips",
     "white rice: brown rice or cauliflower rice\nsour cream: plain Greek yogurt\npotato chips: air-popped popcorn"),
    ("Why do we have leap years?", N,
     ("A year on Earth is about 365.24 days, so adding a day roughly every four years keeps the calendar in "
     "step with the seasons.")),
    ("Rewrite the message so that it sounds more professional.", "hey, cant make it 2day, can we do tmrw?",
     "Hello, unfortunately I am unable to attend today. Would tomorrow work for you instead?"),
    ("Make a study plan for learning 300 vocabulary words in three weeks.", N,
     ("Learn 15 new words each weekday and review all words from the week on weekends. Use spaced-repetition "
     "flashcards, write one sentence per word, and test yourself at the end of each week.")),
    ("Estimate how long it would take to walk 12 kilometres at an average pace.", N,
     "At about 5 km per hour, 12 km takes roughly 2 hours and 25 minutes, not counting breaks."),
    ("Point out the logical fallacy in the statement.",
     "Everyone I know loves this phone, so it must be the best phone on the market.",
     ("It is a hasty generalisation (and an appeal to popularity): the opinions of a few acquaintances do not "
     "show that the phone is the best overall.")),
    ("Translate the sentence into French.", "The library closes at eight o'clock.",
     "La bibliothèque ferme à huit heures."),
    ("Compose a thank-you note to a neighbour who watered your plants while you were away.", N,
     ("Dear Mrs. Ortiz,\nThank you so much for looking after my plants while I was away. They are thriving "
     "thanks to you! Please let me know if I can ever return the favour.\nWarmly, Jo")),
    ("Tell me whether each sentence is in the past, present or future tense.",
     "She will call tomorrow.\nThey walked home.\nI am reading.",
     "She will call tomorrow: future\nThey walked home: past\nI am reading: present"),
    ("What is the median of the numbers?", "7, 3, 9, 1, 5, 11",
     "Sorted: 1, 3, 5, 7, 9, 11. The median is (5 + 7) / 2 = 6."),
    ("Draft a two-sentence product description for a reusable water bottle.", N,
     ("Keep drinks cold for 24 hours or hot for 12 with this double-walled steel bottle. Its leak-proof lid "
     "and slim shape make it easy to carry anywhere.")),
    ("Identify the main idea of the paragraph.",
     ("Many people assume that creativity is a rare gift. Yet studies of artists and scientists show that "
     "creative work usually comes from steady practice, a habit of noticing problems, and many failed attempts."),
     "Creativity comes mostly from practice and persistence rather than from rare talent."),
    ("Recommend a board game for a family with young children and explain why.", N,
     ("Try Outfoxed! It is cooperative, so nobody loses alone, the rules take minutes to learn, and it "
     "teaches simple deduction.")),
    ("Write a regular expression that matches a five-digit US ZIP code.", N, "^\\d{5}$"),
    ("Pick the odd one out and explain your choice.", "Mercury, Venus, Moon, Mars",
     "The Moon is the odd one out, because it is a natural satellite while the others are planets."),
    ("Generate a list of interview questions for a volunteer at an animal shelter.", N,
     ("1. Why do you want to volunteer with animals?\n2. How many hours a week can you commit?\n3. Have you "
     "cared for pets before?\n4. How would you handle a frightened dog?")),
    ("Outline the main arguments for and against a four-day work week.", N,
     ("For: better rest, higher focus, lower commuting costs. Against: longer working days, harder scheduling "
     "for customer-facing jobs, and possible pressure to fit the same work into less time.")),
    ("Expand the abbreviation and explain what it means.", "GDP",
     "GDP stands for gross domestic product: the total value of goods and services produced in a country in a year."),
    ("Correct the spelling mistakes in the text.", "I recieved the pakage yesterday and it was definately worth it.",
     "I received the package yesterday and it was definitely worth it."),
    ("Think of a creative way to teach children the water cycle.", N,
     ("Seal a bag with a little water against a sunny window: children watch it evaporate, form droplets "
     "(condensation) and trickle down (precipitation), then label each stage on the bag.")),
    ("Create a multiple-choice question about the capital of Australia.", N,
     "What is the capital of Australia?\nA) Sydney\nB) Melbourne\nC) Canberra\nD) Perth\nAnswer: C"),
    ("Respond to the customer complaint with an apology and a solution.",
     "My order arrived with a cracked screen.",
     ("I'm very sorry your order arrived damaged. We will send a replacement right away at no cost, and you "
     "can return the cracked item with the prepaid label we'll email you.")),
    ("Sort the words in alphabetical order.", "pear, apple, mango, banana, cherry",
     "apple, banana, cherry, mango, pear"),
    ("Write a short motivational message for someone starting a new job.", N,
     ("Congratulations on the new role! Ask questions, be patient with yourself, and remember they chose you "
     "for a reason.")),
    ("Name three renewable sources of energy and one drawback of each.", N,
     "Solar: depends on daylight. Wind: output varies with the weather. Hydropower: dams can harm river ecosystems."),
    ("Simplify the fraction to its lowest terms.", "84/126", "84/126 = 2/3 (dividing numerator and denominator by 42)."),
    ("Provide a counterargument to the claim.", "Homework should be banned in primary schools.",
     ("Small amounts of homework can build routines, reinforce what was learned in class and let parents see "
     "what their children are studying.")),
    ("What are the key ingredients of a classic margherita pizza?", N,
     "Pizza dough, tomato sauce, fresh mozzarella, fresh basil, olive oil and a pinch of salt."),
    ("Create an acronym to help remember the order of operations in arithmetic.", N,
     "PEMDAS: Parentheses, Exponents, Multiplication and Division, Addition and Subtraction."),
    ("Explain why the joke is funny.", "I told my wife she was drawing her eyebrows too high. She looked surprised.",
     "Eyebrows drawn too high make a face look permanently surprised, so her reaction doubles as proof of the problem."),
    ("Write a function in Python that checks whether a string is a palindrome, ignoring case and spaces.", N,
     "def is_palindrome(text):\n    cleaned = ''.join(text.lower().split())\n    return cleaned == cleaned[::-1]"),
    ("Describe a typical day of a lighthouse keeper in the nineteenth century.", N,
     ("They trimmed wicks and polished lenses in the morning, logged weather and passing ships, hauled oil up "
     "the tower, and spent the night keeping the lamp burning until dawn.")),
    ("Given the meeting notes, list the action items and who owns them.",
     "Ana will update the budget. Tom to book the venue by Monday. Everyone should review the draft agenda.",
     "- Update the budget: Ana\n- Book the venue by Monday: Tom\n- Review the draft agenda: everyone"),
    ("In two sentences, explain how a vaccine trains the immune system.", N,
     ("A vaccine shows the immune system a harmless piece or version of a germ. The body makes antibodies and "
     "memory cells, so it can respond quickly if the real germ appears.")),
    ("Suggest an alternative word for \"very good\" in each sentence.",
     "The food was very good.\nHer speech was very good.",
     "The food was delicious.\nHer speech was inspiring."),
    ("Invent a new holiday and describe how people would celebrate it.", N,
     ("Neighbour Day, on the first Saturday of spring: streets close for shared breakfasts, people swap books "
     "and tools, and everyone introduces themselves to one person they have never spoken to.")),
    ("Which is heavier, a kilogram of feathers or a kilogram of iron?", N,
     "Neither. Both weigh one kilogram; the iron is just far more compact."),
    ("Label each sentence as positive, negative or neutral.",
     "The train was on time.\nThe staff were rude.\nThe seats were incredibly comfortable.",
     "The train was on time: neutral\nThe staff were rude: negative\nThe seats were incredibly comfortable: positive"),
    ("Plan a three-course vegetarian dinner for guests.", N,
     "Starter: roasted tomato soup. Main: mushroom and spinach risotto. Dessert: lemon posset with shortbread."),
    ("Explain recursion using an everyday analogy.", N,
     ("It is like Russian nesting dolls: to open the whole set you open one doll and then do the same thing to "
     "the smaller doll inside, until you reach the smallest, which has nothing inside.")),
    ("Create a catchy title for the news story.",
     "A local teenager built a solar-powered charging station for the town library using recycled parts.",
     "Teen Turns Scrap Into Sunshine: Library Gets Solar Charging Station"),
]

# family: (phrasings, fillers); a filler is (slot text, output); phrasing uses {x}
FAMILIES: list[tuple[list[str], list[tuple[str, str]]]] = [
    (["Explain why {x}.", "Why is it that {x}?", "Give a short explanation of why {x}."], [
        ("the sky looks blue on a clear day",
         ("Air molecules scatter short blue wavelengths of sunlight much more than red ones, so blue light "
         "reaches our eyes from every direction.")),
        ("ice floats on liquid water",
         "When water freezes its molecules lock into an open lattice, making ice less dense than liquid water."),
        ("bread goes stale faster in the fridge than on the counter",
         ("Cold temperatures speed up starch retrogradation, the process in which starch recrystallises and "
         "makes bread firm and dry.")),
        ("metal feels colder than wood at the same temperature",
         "Metal conducts heat away from your skin much faster than wood, so your skin cools more quickly."),
        ("onions make people cry when they are cut",
         ("Cutting releases enzymes that produce a volatile sulfur compound which irritates the eyes and "
         "triggers tears.")),
        ("the Moon always shows the same face to Earth",
         "It is tidally locked: it rotates once on its axis in the same time it takes to orbit Earth."),
        ("salt is spread on icy roads in winter",
         "Salt lowers the freezing point of water, so ice melts at temperatures where it would otherwise stay frozen."),
        ("cats often land on their feet when they fall",
         "A flexible spine and a righting reflex let cats twist their bodies mid-air to face the ground."),
        ("interest rates affect house prices",
         "Higher rates make mortgages more expensive, which lowers what buyers can borrow and cools demand."),
        ("leaves change colour in autumn",
         ("As days shorten, trees stop making green chlorophyll, revealing yellow and orange pigments, and some "
         "produce red ones.")),
        ("a spoon in a glass of water looks bent",
         "Light changes speed and direction as it passes from water to air, so the underwater part appears shifted."),
        ("popcorn pops when it is heated",
         "Water inside each kernel turns to steam, pressure builds until the hull bursts, and the starch puffs out."),
        ("people get jet lag after long flights",
         "The body clock stays set to the old time zone, so sleep and hunger signals clash with local time."),
        ("deserts can be very cold at night",
         "Dry air and clear skies hold little heat, so the ground radiates its warmth into space after sunset."),
        ("compound interest grows savings faster than simple interest",
         "Interest is earned on previously earned interest as well as on the original amount, so growth accelerates."),
        ("sleep helps with learning new skills",
         "During sleep the brain replays and consolidates the day's memories, strengthening new connections."),
    ]),
    (["Give three tips for {x}.", "What are three practical tips for {x}?", "Share three pieces of advice for {x}."], [
        ("staying focused while studying at home",
         ("1. Keep your phone in another room.\n2. Work in 25-minute blocks with short breaks.\n3. Set a clear "
         "goal for each session.")),
        ("saving money on weekly groceries",
         "1. Plan meals and shop with a list.\n2. Buy store brands for staples.\n3. Cook in batches and freeze portions."),
        ("keeping houseplants alive through winter",
         "1. Water less often.\n2. Move plants closer to a bright window.\n3. Keep them away from radiators."),
        ("giving a confident presentation to a large audience",
         ("1. Rehearse out loud several times.\n2. Open with a story or question.\n3. Pause and breathe instead "
         "of rushing.")),
        ("making a long car journey with children more pleasant",
         "1. Plan breaks every two hours.\n2. Pack snacks and audiobooks.\n3. Play simple word games together."),
        ("writing a clear and friendly cover letter",
         "1. Address it to a named person.\n2. Link your experience to the job's needs.\n3. Keep it under one page."),
        ("reducing plastic waste in the kitchen",
         "1. Use beeswax wraps instead of cling film.\n2. Buy loose produce.\n3. Keep reusable bags by the door."),
        ("learning to cook as a complete beginner",
         "1. Master a few simple dishes first.\n2. Read the whole recipe before starting.\n3. Taste as you go."),
        ("getting better sleep on work nights",
         "1. Keep a consistent bedtime.\n2. Avoid screens for an hour before bed.\n3. Keep the bedroom cool and dark."),
        ("running a productive team meeting",
         "1. Share an agenda in advance.\n2. Keep it short and start on time.\n3. End with owners for each action."),
        ("preparing for a first marathon",
         ("1. Increase weekly distance gradually.\n2. Practise race-day nutrition on long runs.\n3. Taper in the "
         "final two weeks.")),
        ("welcoming a new colleague to the team",
         "1. Prepare their accounts before day one.\n2. Assign a buddy.\n3. Invite them to lunch in the first week."),
        ("keeping a personal journal consistently",
         "1. Write at the same time each day.\n2. Start with three lines.\n3. Keep the notebook where you can see it."),
        ("negotiating a higher salary for a new job",
         "1. Research market rates.\n2. Name a specific figure.\n3. Highlight the value you bring, not your needs."),
    ]),
    (["Write a short persuasive paragraph arguing that {x}.", "Make the case that {x}, in a few sentences.",
      "Argue briefly that {x}."], [
        ("cities should plant more trees along busy streets",
         ("Street trees cool the air, filter pollution and make walking pleasant. They also raise property values "
         "and reduce flooding, so planting them is one of the cheapest ways for a city to improve daily life.")),
        ("schools should teach basic cooking skills",
         ("Cooking teaches maths, chemistry and planning, and it gives young people a lifelong way to eat "
         "healthily and cheaply. It deserves a place beside other life skills in the timetable.")),
        ("public libraries are more important than ever",
         ("Libraries offer free internet, quiet study space, books and classes to anyone. In an age of costly "
         "information, they remain one of the few truly open public places.")),
        ("companies should allow employees to work from home two days a week",
         ("Hybrid work saves commuting time, improves focus for deep work and widens the talent pool, while "
         "office days keep collaboration alive.")),
        ("people should learn a second language as adults",
         ("A new language opens cultures, travel and careers, and studies suggest it keeps the brain sharp. It "
         "is never too late to start.")),
        ("towns should build more protected bicycle lanes",
         ("Protected lanes make cycling safe for everyone, cut traffic and emissions, and improve health at a "
         "fraction of the cost of new roads.")),
        ("every household should keep a basic emergency kit",
         ("Storms and power cuts happen without warning. Water, a torch, batteries, medicine and some food can "
         "make the first days of an emergency far safer.")),
        ("museums should be free to enter",
         ("Free entry opens culture to families who could not otherwise afford it and brings in visitors who "
         "spend money in cafés and shops.")),
        ("children benefit from unstructured outdoor play",
         ("Free play outdoors builds creativity, resilience and social skills that organised activities often "
         "cannot, and it gets children moving.")),
        ("restaurants should show calorie counts on their menus",
         ("Clear calorie information helps diners make informed choices without banning anything, and it "
         "nudges restaurants to offer lighter options.")),
    ]),
    (["What is the difference between {x}?", "Explain the difference between {x}.",
      "How do {x} differ?"], [
        ("weather and climate",
         "Weather is the short-term state of the atmosphere; climate is the average pattern over decades."),
        ("a virus and a bacterium",
         "Bacteria are living single cells that can reproduce on their own; viruses must infect a host cell to copy themselves."),
        ("a debit card and a credit card",
         "A debit card spends money already in your account; a credit card borrows money you repay later."),
        ("renewable and non-renewable resources",
         "Renewable resources replenish naturally on human timescales; non-renewable ones, like coal, do not."),
        ("a simile and a metaphor",
         "A simile compares using \"like\" or \"as\"; a metaphor states the comparison directly."),
        ("mitosis and meiosis",
         "Mitosis makes two identical cells for growth; meiosis makes four genetically different sex cells."),
        ("speed and velocity",
         "Speed is how fast something moves; velocity is speed in a given direction."),
        ("a stock and a bond",
         "A stock is a share of ownership in a company; a bond is a loan to a company or government that pays interest."),
        ("an acute angle and an obtuse angle",
         "An acute angle is less than 90 degrees; an obtuse angle is between 90 and 180 degrees."),
        ("baking soda and baking powder",
         "Baking soda needs an acid in the recipe to react; baking powder already contains its own acid."),
    ]),
    (["Write a haiku about {x}.", "Compose a haiku on the theme of {x}."], [
        ("the first snowfall of the year", "Silent flakes settle\nrooftops forget their colour\nthe street holds its breath"),
        ("a busy train station at rush hour", "Doors sigh and open\na thousand footsteps hurry\nclocks above stand still"),
        ("an old dog sleeping in the sun", "Grey muzzle at rest\nwarm planks beneath a slow tail\nsummer in his dreams"),
        ("waiting for exam results", "Inbox refreshes\nheart louder than the keyboard\none more minute, please"),
        ("a thunderstorm over the sea", "Black clouds stride the waves\nlightning stitches sky to sea\nthe gulls fly inland"),
        ("morning coffee before work", "Steam curls from the cup\nthe quiet before emails\nfirst sip, then the day"),
    ]),
    (["Describe how to {x} in a few simple steps.", "What are the steps to {x}?", "Outline how to {x}."], [
        ("change a flat bicycle tyre",
         ("1. Remove the wheel and let out remaining air.\n2. Lever off the tyre and pull out the tube.\n"
         "3. Find and patch the hole or fit a new tube.\n4. Refit the tyre, inflate and replace the wheel.")),
        ("brew a pot of loose-leaf tea",
         ("1. Warm the pot with hot water.\n2. Add one teaspoon of leaves per cup.\n3. Pour water at the right "
         "temperature.\n4. Steep three to five minutes and strain.")),
        ("create a simple monthly budget",
         ("1. List your monthly income.\n2. List fixed costs.\n3. Set limits for variable spending.\n"
         "4. Put aside savings first and track spending weekly.")),
        ("introduce a new cat to a home with a dog",
         ("1. Keep them in separate rooms at first.\n2. Swap bedding so they learn each other's scent.\n"
         "3. Let them meet briefly with the dog on a lead.\n4. Increase time together gradually.")),
        ("write a good research question",
         ("1. Pick a topic you care about.\n2. Read what is already known.\n3. Narrow it to one specific gap.\n"
         "4. Phrase it so it can be answered with evidence.")),
        ("clean a cast-iron skillet without ruining it",
         ("1. Rinse with hot water while warm.\n2. Scrub with coarse salt instead of soap.\n3. Dry completely "
         "on the stove.\n4. Rub in a thin layer of oil.")),
        ("prepare a garden bed for spring planting",
         "1. Clear weeds and debris.\n2. Loosen the soil with a fork.\n3. Mix in compost.\n4. Rake level and water before planting."),
        ("back up the photos on your phone",
         ("1. Choose a cloud service or computer.\n2. Turn on automatic backup or connect the phone.\n"
         "3. Copy the photo folders.\n4. Check that a few photos open from the backup.")),
    ]),
]


@lru_cache(maxsize=1)
def all_tasks() -> tuple[tuple[str, str, str, str], ...]:
    """Every task as (key, instruction template, input, output); templates may hold several phrasings
    separated by "\\x1f" (the server picks one per response)."""
    tasks: list[tuple[str, str, str, str]] = []
    for index, (instruction, input_text, output) in enumerate(STANDALONE):
        tasks.append((f"s{index}", instruction, input_text, output))
    for family_index, (phrasings, fillers) in enumerate(FAMILIES):
        for filler_index, (slot, output) in enumerate(fillers):
            variants = "\x1f".join(p.format(x=slot) for p in phrasings)
            tasks.append((f"f{family_index}.{filler_index}", variants, "", output))
    for index, (instruction, input_text, output) in enumerate(MORE_TASKS):
        tasks.append((f"m{index}", instruction, input_text, output))
    return tuple(tasks)
