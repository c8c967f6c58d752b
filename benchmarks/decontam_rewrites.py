"""Hand-written rephrasings of GSM8K test items 0-11, the way a "rephrase this question" prompt rewrites
them (MetaMath style): the same numbers and names, the wording and the sentence order free. Item i of
``REWRITES`` rephrases test item i. ``benchmarks/decontam.py`` reports how many the gate catches."""

REWRITES = [
    "Each day, the ducks belonging to Janet produce 16 eggs. Every morning she has three of them for breakfast, "
    "and she uses four daily to bake muffins for her friends. The leftover eggs are sold at the farmers' market "
    "at $2 apiece. What is her daily income from the farmers' market, in dollars?",
    "To make a robe, you need 2 bolts of blue fabric plus half as much white fabric. What is the total number of "
    "bolts required?",
    "Josh wants to flip a house. He purchases one for $80,000 and spends $50,000 on renovations, which raises the "
    "home's value by 150%. What is his profit?",
    "Three times every week, James runs 3 sprints of 60 meters each. What distance does he cover in total each week?",
    "Wendi gives each of her chickens three cups of mixed feed (seeds, mealworms and vegetables) per day, split "
    "across three meals. She feeds the flock 15 cups in the morning and 25 cups in the afternoon. With 20 chickens "
    "in her flock, how many cups must she give them at the last meal?",
    "Kylar is buying glasses for his new apartment at the store. A glass is $5, but every second glass is only 60% "
    "of that price. If he buys 16 glasses, what will he pay?",
    "Seattle has 20 sheep. Charleston has 4 times as many sheep as Seattle, and Toulouse has twice as many as "
    "Charleston. How many sheep do the three cities have altogether?",
    "Carla needs to download a file of 200 GB at 2 GB per minute. When she is 40% done, Windows restarts to install "
    "updates, taking 20 minutes, and she must start the download over. How long does the whole download take?",
    "John drives 3 hours at 60 mph, then realizes he left something important at home and turns back. He aims to "
    "be home in 4 hours, but the first 2 hours are spent stuck in traffic, the next half hour at 30 mph, and the "
    "rest of the 4 hours at 80 mph. At the end of the 4 hours, how far from home is he?",
    "Eliza earns $10 an hour for her first 40 hours of work each week, and overtime is paid at 1.2 times that "
    "rate. She worked 45 hours this week. What did she earn?",
    "In its first month a new program was downloaded 60 times. The second month saw three times as many "
    "downloads, while the third month dropped 30% from the second. What was the total number of downloads "
    "across the three months?",
    "At the bakery, Toula picked up 3 dozen donuts at $68 a dozen, 2 dozen mini cupcakes at $80 a dozen, and 6 "
    "dozen mini cheesecakes at $55 a dozen. What did she spend in total?",
]
