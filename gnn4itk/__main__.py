from gnn4itk.cli import main

raise SystemExit(main())
