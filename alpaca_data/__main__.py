from alpaca_data.cli import main

main()
