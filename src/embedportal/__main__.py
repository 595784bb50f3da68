from embedportal.cli import main

main()
