from mmlbench.cli import main

main()
