from transact.cli import main

main()
